/* The observation page's pixels: the thumbnail and cutouts are data, read with the visitor's token as
   a Bearer header (never a cookie, never in the URL) and shown from blob: URLs. An image is fetched
   when it scrolls into view, so a long candidate list costs only what is looked at. */
(function () {
  "use strict";
  const form = document.getElementById("pixels-form");
  if (!form) return;
  const TOKEN_KEY = "cpcs-token";
  const token = document.getElementById("pixels-token");
  const remember = document.getElementById("pixels-remember");
  const message = document.getElementById("pixels-message");
  const section = document.getElementById("pixels");
  const images = Array.from(section.querySelectorAll("img[data-src]"));
  let observer = null;

  try {
    const saved = window.sessionStorage.getItem(TOKEN_KEY);
    if (saved) { token.value = saved; remember.checked = true; }
  } catch (e) { /* storage disabled */ }

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  async function explain(response) {
    try { const body = await response.json(); return body.message || response.statusText; }
    catch (e) { return response.statusText; }
  }

  async function load(img, bearer) {
    img.dataset.state = "loading";
    let response;
    try {
      response = await fetch(img.dataset.src, { headers: { Authorization: "Bearer " + bearer, Accept: "image/png" } });
    } catch (e) {
      img.dataset.state = "failed";
      say("The server could not be reached: " + e);
      return;
    }
    if (!response.ok) {
      img.dataset.state = "failed";
      img.title = await explain(response);
      if (response.status === 401) say(img.title);
      return;
    }
    const blob = await response.blob();
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.dataset.state = "loaded";
  }

  function show(bearer) {
    if (observer) observer.disconnect();
    say("");
    observer = new IntersectionObserver((entries) => {
      entries.forEach((entry) => {
        if (!entry.isIntersecting) return;
        observer.unobserve(entry.target);
        load(entry.target, bearer);
      });
    }, { rootMargin: "200px" });
    images.forEach((img) => observer.observe(img));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bearer = token.value.trim();
    if (!bearer) { say("Give your token to see the pixels."); token.focus(); return; }
    try {
      if (remember.checked) window.sessionStorage.setItem(TOKEN_KEY, bearer);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled */ }
    show(bearer);
  });

  if (token.value.trim()) show(token.value.trim());
})();

/* The admin status page: read /api/v1/admin/status with the token as a Bearer header, draw the tables;
   a dead letter's Replay button POSTs to its queue's replay endpoint with the same header (no cookie
   is ever used, so another site cannot make the browser send it). */
(function () {
  "use strict";
  const form = document.getElementById("status-form");
  if (!form) return;
  const TOKEN_KEY = "cpcs-token";
  const token = document.getElementById("token");
  const remember = document.getElementById("remember");
  const message = document.getElementById("status-message");
  const section = document.getElementById("status");

  try {
    const saved = window.sessionStorage.getItem(TOKEN_KEY);
    if (saved) { token.value = saved; remember.checked = true; }
  } catch (e) { /* storage disabled */ }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    tr.appendChild(td);
    return td;
  }

  function fill(id, rows, draw) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, "none");
      td.colSpan = document.querySelectorAll("#" + id + " thead th").length;
      body.appendChild(tr);
      return;
    }
    rows.forEach((row) => { const tr = document.createElement("tr"); draw(tr, row); body.appendChild(tr); });
  }

  function seconds(value) { return value === undefined ? "—" : value.toFixed(1); }

  function headers() { return { Authorization: "Bearer " + token.value.trim(), Accept: "application/json" }; }

  async function explain(response) {
    try { const body = await response.json(); return body.message || response.statusText; }
    catch (e) { return response.statusText; }
  }

  async function replay(queue, messageId, button) {
    button.disabled = true;
    const response = await fetch("/api/v1/admin/dead-letters/" + encodeURIComponent(queue) + "/replay", {
      method: "POST",
      headers: Object.assign(headers(), { "Content-Type": "application/json" }),
      body: JSON.stringify({ message_ids: [messageId] }),
    });
    if (!response.ok) {
      message.textContent = "Replay refused (" + response.status + "): " + (await explain(response));
      button.disabled = false;
      return;
    }
    const body = await response.json();
    message.textContent = "Replayed " + body.replayed + " message(s) of " + body.queue + ".";
    await load();
  }

  function draw(data) {
    fill("windows", data.windows, (tr, w) => {
      cell(tr, w.label); cell(tr, w.uploads); cell(tr, w.calibrated); cell(tr, w.waiting);
      cell(tr, Object.entries(w.failures).map(([k, n]) => k + " × " + n).join(", ") || "none");
      const p = w.latency_percentiles_s;
      cell(tr, [p["50"], p["90"], p["99"]].map(seconds).join(" / "));
    });
    fill("queues", data.queues, (tr, q) => { cell(tr, q.queue); cell(tr, q.ready); cell(tr, q.retrying); cell(tr, q.dead); });
    document.getElementById("outbox").textContent =
      "Outbox: " + data.outbox.count + " message(s) waiting to be published, the oldest " +
      data.outbox.oldest_age_s.toFixed(0) + " s old.";
    fill("dead-letters", data.dead_letters, (tr, d) => {
      cell(tr, d.queue); cell(tr, d.message_id); cell(tr, d.routing_key); cell(tr, d.attempts);
      cell(tr, d.failed_at); cell(tr, d.reason);
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button"; button.className = "replay"; button.textContent = "Replay";
      button.addEventListener("click", () => replay(d.queue, d.message_id, button));
      td.appendChild(button); tr.appendChild(td);
    });
    fill("failures", data.recent_failures, (tr, f) => {
      const td = document.createElement("td");
      const link = document.createElement("a");
      link.href = "/observations/" + f.observation_id; link.textContent = f.observation_id;
      td.appendChild(link); tr.appendChild(td);
      cell(tr, f.alert); cell(tr, f.status); cell(tr, f.code); cell(tr, f.message); cell(tr, f.at);
    });
  }

  async function load() {
    const response = await fetch("/api/v1/admin/status", { headers: headers() });
    if (!response.ok) {
      section.hidden = true;
      message.textContent = "Not shown (" + response.status + "): " + (await explain(response));
      return;
    }
    draw(await response.json());
    section.hidden = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      if (remember.checked) window.sessionStorage.setItem(TOKEN_KEY, token.value.trim());
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled */ }
    message.textContent = "";
    load().catch((error) => { message.textContent = "The status could not be read: " + error; });
  });
})();

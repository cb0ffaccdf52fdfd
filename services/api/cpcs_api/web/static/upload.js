/* The upload form: POST to ingest (the form's action, /api/v1/uploads) with the token as a Bearer header, then poll the status. */
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const TOKEN_KEY = "cpcs-token";
  const FINAL = ["calibrated", "failed", "error"];
  const POLL_MS = 1000;
  const POLL_LIMIT_MS = 15 * 60 * 1000;

  const token = document.getElementById("token");
  const remember = document.getElementById("remember");
  const box = document.getElementById("upload-result");
  const statusLine = document.getElementById("upload-status");
  const details = document.getElementById("upload-details");
  const submit = document.getElementById("submit");

  // The token is kept for this tab only (sessionStorage), never across browser sessions; a copy an
  // earlier version of this page left in localStorage is removed.
  try {
    window.localStorage.removeItem(TOKEN_KEY);
    const saved = window.sessionStorage.getItem(TOKEN_KEY);
    if (saved) { token.value = saved; remember.checked = true; }
  } catch (e) { /* storage disabled: nothing to restore */ }

  function show(state, text) {
    if (box.hidden) {
      box.hidden = false;
      box.scrollIntoView({ block: "nearest" });
    }
    box.dataset.state = state;
    statusLine.textContent = text;
  }

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.entries(attributes || {}).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }

  function number(value, digits) {
    return value === null || value === undefined || !Number.isFinite(value) ? "—" : value.toFixed(digits);
  }

  function rows(pairs) {
    const table = element("table", null, { class: "data compact", id: "upload-summary" });
    const body = element("tbody");
    pairs.forEach(([name, value]) => {
      const tr = element("tr");
      tr.appendChild(element("th", name));
      tr.appendChild(element("td", value));
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  /* What this upload did to the light curve: added a point, found the existing one, or corrected it. */
  function outcome(observation, accepted) {
    if (observation.dry_run) return " — dry run, not added to the light curve";
    if (accepted.duplicate && accepted.corrected && accepted.corrected.length) {
      return " — you uploaded this file before: your existing point was corrected (" + accepted.corrected.join(", ") + "), nothing was added";
    }
    if (accepted.duplicate) return " — you uploaded this file before: nothing was added, this is your existing point";
    if (accepted.point_id) {
      const fixed = accepted.corrected && accepted.corrected.length ? " and corrected (" + accepted.corrected.join(", ") + ")" : "";
      return " — you uploaded this file before: your existing point was recalibrated with these parameters" + fixed;
    }
    return " — added to the light curve";
  }

  function showObservation(observation, accepted) {
    details.replaceChildren();
    const link = element("a", "Observation " + observation.id + ": calibration plots", {
      href: "/observations/" + observation.id, id: "observation-link",
    });
    if (observation.status === "calibrated" && observation.calibration) {
      const c = observation.calibration;
      const t = c.target;
      const value = t.is_upper_limit
        ? c.band + " > " + number(t.mag, 2) + " (upper limit)"
        : c.band + " = " + number(t.mag, 3) + " ± " + number(t.err_total, 3);
      show("calibrated", value + outcome(observation, accepted));
      details.appendChild(rows([
        ["Reference", c.survey + "/" + c.band + " (" + c.mode + ")"],
        ["Zero point", number(c.zp, 3) + " ± " + number(c.zp_err, 3)],
        ["Colour term", number(c.colour_term, 3) + (c.colour_index ? " (" + c.colour_index + ")" : "")],
        ["Scatter", number(c.scatter, 3)],
        ["Stars used / matched", c.n_stars + " / " + c.n_matched],
      ]));
    } else if (FINAL.includes(observation.status)) {
      show(observation.status, "Calibration " + observation.status + ": " +
        (observation.error_code || "") + (observation.error_message ? " — " + observation.error_message : ""));
    } else {
      show("waiting", "Status: " + observation.status + "…");
    }
    details.appendChild(element("p")).appendChild(link);
  }

  /* Follow the upload's calibration request (for a file sent again: the existing one, or the run that
     recalibrates the corrected observation), then show the observation it ended in. */
  async function poll(accepted, bearer) {
    const headers = { Authorization: "Bearer " + bearer };
    const started = Date.now();
    for (;;) {
      const response = await fetch("/api/v1/calibration-requests/" + accepted.calibration_request_id, { headers });
      const body = await response.json();
      if (!response.ok) { show("error", (body.error || response.status) + ": " + (body.message || "")); return; }
      if (FINAL.includes(body.status)) break;
      show("waiting", "Status: " + body.status + "…");
      if (Date.now() - started > POLL_LIMIT_MS) { show("waiting", "Still " + body.status + "; reload the observation page later."); return; }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const response = await fetch("/api/v1/observations/" + accepted.observation_id, { headers });
    const observation = await response.json();
    if (!response.ok) { show("error", (observation.error || response.status) + ": " + (observation.message || "")); return; }
    showObservation(observation, accepted);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bearer = token.value.trim();
    const file = document.getElementById("file").files[0];
    if (!bearer) { show("error", "Give your token."); token.focus(); return; }
    if (!form.elements.alert.value.trim()) { show("error", "Name the alert."); form.elements.alert.focus(); return; }
    if (!file) { show("error", "Choose a catalogue or image file."); return; }
    try {
      if (remember.checked) window.sessionStorage.setItem(TOKEN_KEY, bearer);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled */ }

    const data = new FormData();
    for (const field of form.elements) {
      if (!field.name || field.name === "token" || field.type === "file" || field.type === "checkbox") continue;
      if (field.value.trim() !== "") data.append(field.name, field.value.trim());
    }
    data.append("dry_run", document.getElementById("dry_run").checked ? "true" : "false");
    data.append("file", file, file.name);

    submit.disabled = true;
    details.replaceChildren();
    show("waiting", "Uploading " + file.name + "…");
    try {
      const response = await fetch(form.action, { method: "POST", body: data, headers: { Authorization: "Bearer " + bearer } });
      const body = await response.json().catch(() => ({}));
      if (response.status !== 202) {
        show("error", "Not accepted (" + response.status + "): " + (body.error || "") + (body.message ? " — " + body.message : ""));
        return;
      }
      show("waiting", "Accepted as observation " + body.observation_id + (body.duplicate ? " (uploaded before)" : "") + "; calibrating…");
      await poll(body, bearer);
    } catch (error) {
      show("error", "The upload failed: " + error);
    } finally {
      submit.disabled = false;
    }
  });
})();

/* The instrument page: zero point, limit, FWHM and sky against time and airmass, and k per night. */
(function () {
  "use strict";
  const data = CPCS.readJson("trends-data");
  if (!data || !data.series.length) return;

  function label(s) {
    return (s.filter || "?") + " (" + s.survey + "/" + s.band + ")";
  }
  function framesOf(s) {
    return data.frames.filter((f) => f.filter === s.filter && f.survey === s.survey && f.band === s.band);
  }
  function colourOf(s, index) {
    return CPCS.bandColour(s.band, index);
  }
  function layout(xTitle, yTitle, reversed) {
    return CPCS.baseLayout({
      // MJDs and nights as plain numbers (not 60.15k)
      xaxis: { title: { text: xTitle }, gridcolor: "#eee", tickformat: xTitle === "Airmass" ? ".2f" : "d" },
      yaxis: { title: { text: yTitle }, gridcolor: "#eee", autorange: reversed ? "reversed" : true, tickformat: ".2f" },
      margin: { l: 60, r: 20, t: 10, b: 50 },
      legend: { orientation: "h", y: -0.25 },
    });
  }
  function withNote(traces, lay, note) {
    // A plot without a value says why instead of showing empty axes.
    if (traces.some((t) => t.x.length)) return lay;
    return Object.assign(lay, {
      xaxis: { visible: false }, yaxis: { visible: false },
      annotations: [{ text: note, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
    });
  }
  function scatter(xKey, yKey, errKey) {
    return data.series.map((s, index) => {
      const rows = framesOf(s).filter((f) => f[xKey] !== null && f[yKey] !== null);
      const trace = {
        type: "scatter", mode: "markers", name: label(s),
        x: rows.map((f) => f[xKey]), y: rows.map((f) => f[yKey]),
        marker: { color: colourOf(s, index), size: 6 },
        customdata: rows.map((f) => f.observation_id),
        hovertemplate: "%{x:.4f}, %{y:.3f}<br>observation %{customdata}<extra>" + label(s).replace(/[<>&]/g, "") + "</extra>",
      };
      if (errKey) trace.error_y = { type: "data", array: rows.map((f) => f[errKey]), thickness: 1, width: 0, color: colourOf(s, index) };
      return trace;
    });
  }
  function nightLines() {
    const traces = [];
    data.series.forEach((s, index) => {
      s.nights.filter((n) => n.k !== null).forEach((n) => {
        traces.push({
          type: "scatter", mode: "lines", showlegend: false, x: [n.airmass_min, n.airmass_max],
          y: [n.zp0 - n.k * n.airmass_min, n.zp0 - n.k * n.airmass_max],
          line: { color: colourOf(s, index), width: 1, dash: "dot" },
          hovertemplate: "night " + n.night + ": k = " + n.k.toFixed(3) + "<extra></extra>",
        });
      });
    });
    return traces;
  }
  function kPerNight() {
    return data.series.map((s, index) => {
      const nights = s.nights.filter((n) => n.k !== null);
      return {
        type: "scatter", mode: "markers+lines", name: label(s),
        x: nights.map((n) => n.night), y: nights.map((n) => n.k),
        error_y: { type: "data", array: nights.map((n) => n.k_err), thickness: 1, width: 0, color: colourOf(s, index) },
        marker: { color: colourOf(s, index), size: 7 }, line: { color: colourOf(s, index), width: 1 },
        hovertemplate: "night %{x}: k = %{y:.3f}<extra></extra>",
      };
    });
  }
  // The planning figure: the limit model of each filter at the exposure time and airmass asked for.
  const exptimeInput = document.getElementById("plan-exptime");
  const airmassInput = document.getElementById("plan-airmass");
  const result = document.getElementById("plan-result");
  function plan() {
    const t = Number(exptimeInput.value), x = Number(airmassInput.value);
    result.replaceChildren();
    if (!(t > 0) || !(x >= 1 && x <= 5)) {
      const item = document.createElement("li");
      item.textContent = "Give an exposure time above 0 s and an airmass from 1 to 5.";
      result.append(item);
      return;
    }
    data.series.forEach((s) => {
      const item = document.createElement("li");
      const m = s.limit_model;
      if (!m) {
        item.textContent = label(s) + ": no limits measured yet";
      } else {
        const k = s.k_mean === null ? 0 : s.k_mean;
        const limit = m.limit_at_reference + m.slope_per_dex * Math.log10(t / m.reference_exptime_s) - k * (x - 1);
        item.textContent = label(s) + ": 5σ limit " + limit.toFixed(2) + " mag (± " + m.scatter.toFixed(2) + ")";
      }
      item.dataset.series = label(s);
      result.append(item);
    });
  }
  if (exptimeInput && airmassInput && result) {
    exptimeInput.addEventListener("input", plan);
    airmassInput.addEventListener("input", plan);
    plan();
  }

  const imagesOnly = "No image frames yet:<br>FWHM and sky are measured on images";
  const plots = [
    ["zp-time", scatter("mjd", "zp", "zp_err"), layout("MJD", "Zero point (mag)", false)],
    ["zp-airmass", scatter("airmass", "zp", "zp_err").concat(nightLines()), layout("Airmass", "Zero point (mag)", false)],
    ["limit-time", scatter("mjd", "limit_mag", null), layout("MJD", "5σ limit (mag)", true), "No limits measured yet"],
    ["fwhm-time", scatter("mjd", "fwhm_arcsec", null), layout("MJD", "FWHM (arcsec)", false), imagesOnly],
    ["sky-time", scatter("mjd", "sky_mag_arcsec2", null), layout("MJD", "Sky (mag/arcsec²)", true), imagesOnly],
    ["k-night", kPerNight(), layout("Night (MJD)", "Extinction k (mag/airmass)", false),
      "No night with enough frames over<br>enough airmass for an extinction fit yet"],
  ].map(([id, traces, lay, note]) => [id, traces, note ? withNote(traces, lay, note) : lay]);
  // Nights are whole numbers: tick each of them while they are few.
  const fitted = Array.from(new Set(data.series.flatMap((s) => s.nights.filter((n) => n.k !== null).map((n) => n.night))));
  if (fitted.length && fitted.length <= 12) plots[5][2].xaxis.tickvals = fitted;
  Promise.all(plots.map(([id, traces, lay]) => Plotly.newPlot(document.getElementById(id), traces, lay, CPCS.CONFIG)))
    .then(() => { document.getElementById("zp-time").dataset.ready = "1"; });
})();

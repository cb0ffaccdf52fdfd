/* The observation page's calibration plots, drawn from the recomputed matched stars. */
(function () {
  "use strict";
  const data = CPCS.readJson("calibration-data");
  if (!data) return;

  const USED = "#1f5fbf";
  const REJECTED = "#9a9a9a";
  const FIT = "#d62728";
  const pending = [];

  function pick(values, mask, want) {
    const out = [];
    values.forEach((v, i) => { if (mask[i] === want) out.push(v); });
    return out;
  }

  function finite(values) {
    return values.filter((v) => v !== null && Number.isFinite(v));
  }

  // Instrumental against catalogue magnitude, used stars filled, rejected ones open, and the fit line
  // m_cat = m_inst + zp + colour_term * (median colour).
  function magnitudeTraces(entry, showLegend) {
    const traces = [];
    const hover = "inst %{x:.3f}<br>" + entry.label + " %{y:.3f}<extra>%{fullData.name}</extra>";
    traces.push({
      type: "scatter", mode: "markers", name: "used", showlegend: showLegend,
      x: pick(entry.inst, entry.used, true), y: pick(entry.cat, entry.used, true),
      marker: { color: USED, size: 5, opacity: 0.8 }, hovertemplate: hover,
    });
    traces.push({
      type: "scatter", mode: "markers", name: "rejected", showlegend: showLegend,
      x: pick(entry.inst, entry.used, false), y: pick(entry.cat, entry.used, false),
      marker: { color: REJECTED, size: 5, symbol: "circle-open" }, hovertemplate: hover,
    });
    if (entry.zp !== null) {
      const xs = finite(entry.inst);
      if (xs.length) {
        const lo = Math.min.apply(null, xs), hi = Math.max.apply(null, xs);
        const offset = entry.zp + (entry.colour_term || 0) * (entry.median_colour || 0);
        traces.push({
          type: "scatter", mode: "lines", name: "fit", showlegend: showLegend,
          x: [lo, hi], y: [lo + offset, hi + offset],
          line: { color: FIT, width: 1.5 }, hoverinfo: "skip",
        });
      }
    }
    return traces;
  }

  function describe(entry) {
    if (entry.zp === null) return entry.label + ": no fit (" + (entry.failure || "failed") + ")";
    let text = entry.label + (entry.rank ? " · rank " + entry.rank : "") + " · σ " + entry.scatter.toFixed(3);
    if (entry.colour_term !== null) text += " · ct " + (entry.colour_term >= 0 ? "+" : "") + entry.colour_term.toFixed(2);
    return text + " · " + entry.n_used + "/" + entry.n_matched + " stars" + (entry.failure ? " · " + entry.failure : "");
  }

  function draw(element, traces, layout) {
    pending.push(Plotly.newPlot(element, traces, CPCS.baseLayout(layout), CPCS.CONFIG));
  }

  const chosenEntry = data.bands.find((b) => b.chosen);
  const chosen = data.chosen;
  const target = data.target || {};

  // The plots are recomputed: say so when they no longer agree with the stored calibration
  // (reference stars changed since, or another pipeline version).
  const stored = data.stored;
  let mismatch = null;
  if (stored && !chosenEntry) mismatch = stored.survey + "/" + stored.band + " is not in today's reference stars";
  else if (stored && chosenEntry && (chosenEntry.zp === null || Math.abs(chosenEntry.zp - stored.zp) > 0.001)) {
    mismatch = "the recomputed zero point differs from the stored one (" + stored.zp.toFixed(3) + ")";
  }
  if (mismatch) {
    const note = document.createElement("p");
    note.className = "notice error";
    note.id = "plots-mismatch";
    note.textContent = "These plots are recomputed and may not show the stored calibration: " + mismatch + ".";
    document.getElementById("band-panels").before(note);
  }

  if (chosenEntry) {
    const traces = magnitudeTraces(chosenEntry, true);
    if (target.inst_mag !== null && target.inst_mag !== undefined && !target.is_upper_limit) {
      traces.push({
        type: "scatter", mode: "markers", name: "target",
        x: [target.inst_mag], y: [target.mag],
        marker: { color: "#ff9900", size: 14, symbol: "star", line: { width: 1, color: "#663300" } },
        hovertemplate: "target<br>inst %{x:.3f}<br>calibrated %{y:.3f}<extra></extra>",
      });
    }
    document.getElementById("caption-chosen").textContent = "Chosen: " + describe(chosenEntry);
    draw("plot-chosen", traces, {
      xaxis: { title: { text: "instrumental magnitude" }, gridcolor: "#eee" },
      yaxis: { title: { text: chosenEntry.label + " (catalogue)" }, gridcolor: "#eee" },
      legend: { x: 0.02, y: 0.98, bgcolor: "rgba(255,255,255,0.8)", bordercolor: "#ddd", borderwidth: 1 },
      margin: { l: 60, r: 15, t: 28, b: 50 },
    });
  }

  if (chosen) {
    const colourName = chosen.colour_index || "colour";
    const colours = finite(chosen.colour);
    const traces = [
      {
        type: "scatter", mode: "markers", name: "used",
        x: pick(chosen.colour, chosen.used, true), y: pick(chosen.colour_residual, chosen.used, true),
        marker: { color: USED, size: 5, opacity: 0.8 },
        hovertemplate: colourName + " %{x:.3f}<br>residual %{y:.3f}<extra></extra>",
      },
      {
        type: "scatter", mode: "markers", name: "rejected",
        x: pick(chosen.colour, chosen.used, false), y: pick(chosen.colour_residual, chosen.used, false),
        marker: { color: REJECTED, size: 5, symbol: "circle-open" },
        hovertemplate: colourName + " %{x:.3f}<br>residual %{y:.3f}<extra></extra>",
      },
    ];
    if (colours.length) {
      const lo = Math.min.apply(null, colours), hi = Math.max.apply(null, colours);
      const slope = chosen.colour_term || 0;
      traces.push({
        type: "scatter", mode: "lines", name: "colour term " + (slope >= 0 ? "+" : "") + slope.toFixed(3),
        x: [lo, hi], y: [slope * lo, slope * hi], line: { color: FIT, width: 1.5 }, hoverinfo: "skip",
      });
    }
    document.getElementById("caption-colour").textContent =
      "Residual against " + colourName + ", colour term added back (line: the fitted colour term)";
    draw("plot-colour", traces, {
      xaxis: { title: { text: colourName + " (catalogue)" }, gridcolor: "#eee" },
      yaxis: { title: { text: "m_cat − m_inst − zp − spatial" }, gridcolor: "#eee", zerolinecolor: "#bbb" },
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", bgcolor: "rgba(255,255,255,0.8)" },
      margin: { l: 60, r: 15, t: 36, b: 50 },
    });

    const residuals = pick(chosen.residual, chosen.used, true);
    const limit = Math.max(0.05, Math.max.apply(null, finite(residuals).map(Math.abs).concat([0])));
    draw("plot-position", [
      {
        type: "scatter", mode: "markers", name: "used",
        x: pick(chosen.x_arcmin, chosen.used, true), y: pick(chosen.y_arcmin, chosen.used, true),
        marker: {
          color: residuals, cmin: -limit, cmax: limit, colorscale: "RdBu", reversescale: true, size: 7,
          line: { width: 0.5, color: "#555" },
          colorbar: { title: { text: "residual" }, thickness: 12 },
        },
        customdata: residuals,
        hovertemplate: "east %{x:.2f}′ north %{y:.2f}′<br>residual %{customdata:.3f}<extra></extra>",
      },
      {
        type: "scatter", mode: "markers", name: "rejected",
        x: pick(chosen.x_arcmin, chosen.used, false), y: pick(chosen.y_arcmin, chosen.used, false),
        marker: { color: REJECTED, size: 6, symbol: "x-thin-open" },
        hovertemplate: "rejected<br>east %{x:.2f}′ north %{y:.2f}′<extra></extra>",
      },
      {
        type: "scatter", mode: "markers", name: "alert",
        x: [0], y: [0], marker: { color: "#ff9900", size: 14, symbol: "star", line: { width: 1, color: "#663300" } },
        hovertemplate: "the alert's position<extra></extra>",
      },
    ], {
      xaxis: { title: { text: "east offset (arcmin)" }, autorange: "reversed", gridcolor: "#eee", zeroline: false },
      yaxis: { title: { text: "north offset (arcmin)" }, scaleanchor: "x", gridcolor: "#eee", zeroline: false },
      showlegend: false,
      margin: { l: 60, r: 15, t: 28, b: 50 },
    });
  }

  const grid = document.getElementById("band-panels");
  data.bands.forEach((entry, index) => {
    const figure = document.createElement("figure");
    figure.className = "plot-figure" + (entry.chosen ? " chosen" : "");
    const caption = document.createElement("figcaption");
    caption.id = "band-caption-" + index;
    caption.textContent = (entry.chosen ? "Chosen: " : "") + describe(entry);
    const panel = document.createElement("div");
    panel.className = "plot plot-panel" + (entry.chosen ? " chosen" : "");
    panel.id = "band-panel-" + index;
    panel.dataset.label = entry.label;
    panel.setAttribute("role", "img");
    panel.setAttribute("aria-labelledby", caption.id);
    figure.appendChild(caption);
    figure.appendChild(panel);
    grid.appendChild(figure);
    draw(panel, magnitudeTraces(entry, false), {
      xaxis: { title: { text: "instrumental" }, gridcolor: "#eee" },
      yaxis: { title: { text: entry.label }, gridcolor: "#eee" },
      margin: { l: 50, r: 10, t: 24, b: 42 },
      showlegend: false,
    });
  });

  Promise.all(pending).then(() => { document.body.dataset.plotsReady = String(pending.length); });
})();

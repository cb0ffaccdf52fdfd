/* The alert page's light curve: one colour per filter, triangles for upper limits. */
(function () {
  "use strict";
  const holder = document.getElementById("lightcurve");
  const data = CPCS.readJson("lightcurve-data");
  if (!holder || !data) return;

  const points = data.points;
  const bands = Array.from(new Set(points.map((p) => p.band))).sort(CPCS.bandOrder);
  const traces = [];
  bands.forEach((band, index) => {
    const colour = CPCS.bandColour(band, index);
    const detections = points.filter((p) => p.band === band && !p.upper_limit);
    const limits = points.filter((p) => p.band === band && p.upper_limit);
    // Names go into plotly's hover text, which reads a few HTML tags: keep them plain text.
    const plain = (text) => String(text).replace(/[<>&]/g, "");
    const custom = (p) => [
      plain(p.observer), plain(p.observatory), plain(p.survey), CPCS.mjdToUtc(p.mjd), p.err, p.observation_id, plain(p.band),
    ];
    if (detections.length) {
      traces.push({
        type: "scatter",
        mode: "markers",
        name: band.replace(/[<>&]/g, ""),
        legendgroup: band,
        x: detections.map((p) => p.mjd),
        y: detections.map((p) => p.mag),
        error_y: { type: "data", array: detections.map((p) => p.err || 0), color: colour, thickness: 1.2, width: 0 },
        marker: { color: colour, size: 9, symbol: "circle", line: { width: 1, color: "#ffffff" } },
        customdata: detections.map(custom),
        hovertemplate:
          "<b>%{customdata[0]}</b> (%{customdata[1]})<br>" +
          "%{customdata[6]} = %{y:.3f} ± %{customdata[4]:.3f} mag<br>" +
          "MJD %{x:.5f} · %{customdata[3]} UTC<br>" +
          "reference %{customdata[2]}/%{customdata[6]}<extra></extra>",
      });
    }
    if (limits.length) {
      traces.push({
        type: "scatter",
        mode: "markers",
        name: band.replace(/[<>&]/g, "") + (detections.length ? " limit" : " (limits)"),
        legendgroup: band,
        showlegend: !detections.length,
        x: limits.map((p) => p.mjd),
        y: limits.map((p) => p.mag),
        marker: { color: colour, size: 12, symbol: "triangle-down", line: { width: 1, color: "#ffffff" } },
        customdata: limits.map(custom),
        hovertemplate:
          "<b>%{customdata[0]}</b> (%{customdata[1]})<br>" +
          "%{customdata[6]} &gt; %{y:.2f} mag (upper limit)<br>" +
          "MJD %{x:.5f} · %{customdata[3]} UTC<br>" +
          "reference %{customdata[2]}/%{customdata[6]}<extra></extra>",
      });
    }
  });

  const layout = CPCS.baseLayout({
    xaxis: { title: { text: "MJD" }, zeroline: false, gridcolor: "#eee", tickformat: ".6~f" },
    yaxis: { title: { text: "Magnitude" }, autorange: "reversed", zeroline: false, gridcolor: "#eee" },
    legend: { title: { text: "Filter" }, orientation: "v" },
    margin: { l: 60, r: 20, t: 20, b: 50 },
  });

  Plotly.newPlot(holder, traces, layout, Object.assign({}, CPCS.CONFIG, {
    toImageButtonOptions: { filename: "cpcs-lightcurve", format: "png" },
  })).then(() => {
    holder.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata) window.location.href = "/observations/" + point.customdata[5];
    });
    holder.dataset.ready = "1";
  });
})();

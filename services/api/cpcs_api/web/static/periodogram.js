/* The alert page's periods: per band, the Lomb-Scargle periodogram and the light curve folded on its best period. */
(function () {
  "use strict";
  const data = CPCS.readJson("periodogram-data");
  const chooser = document.getElementById("periodogram-band");
  const spectrum = document.getElementById("periodogram");
  const folded = document.getElementById("folded");
  const facts = document.getElementById("periodogram-facts");
  if (!data || !data.length || !chooser || !spectrum || !folded) return;

  function fapText(fap) {
    return fap < 1e-4 ? fap.toExponential(1) : fap.toPrecision(2);
  }

  function draw(index) {
    const p = data[index];
    const colour = CPCS.bandColour(p.band, index);
    const periods = p.frequency_per_day.map((f) => 1 / f);
    const layoutSpectrum = CPCS.baseLayout({
      xaxis: { title: { text: "Period (days)" }, type: "log", gridcolor: "#eee" },
      yaxis: { title: { text: "Lomb–Scargle power" }, rangemode: "tozero", gridcolor: "#eee" },
      margin: { l: 60, r: 20, t: 10, b: 50 },
      showlegend: false,
      shapes: [{ type: "line", xref: "x", yref: "paper", x0: p.best_period_d, x1: p.best_period_d, y0: 0, y1: 1,
        line: { color: "#c0392b", width: 1, dash: "dot" } }],
    });
    const traceSpectrum = {
      type: "scatter", mode: "lines", x: periods, y: p.power, line: { color: colour, width: 1 },
      hovertemplate: "P = %{x:.5f} d<br>power %{y:.3f}<extra></extra>",
    };
    // Two cycles, so that a minimum at phase 0 is seen whole.
    const phase = p.points.map((q) => q.phase).concat(p.points.map((q) => q.phase + 1));
    const mags = p.points.map((q) => q.mag).concat(p.points.map((q) => q.mag));
    const errs = p.points.map((q) => q.magerr).concat(p.points.map((q) => q.magerr));
    const traceFolded = {
      type: "scatter", mode: "markers", x: phase, y: mags,
      error_y: { type: "data", array: errs, color: colour, thickness: 1, width: 0 },
      marker: { color: colour, size: 7 },
      hovertemplate: "phase %{x:.3f}<br>%{y:.3f} mag<extra></extra>",
    };
    const layoutFolded = CPCS.baseLayout({
      xaxis: { title: { text: "Phase (P = " + p.best_period_d.toPrecision(6) + " d)" }, range: [0, 2], gridcolor: "#eee" },
      yaxis: { title: { text: p.band.replace(/[<>&]/g, "") + " magnitude" }, autorange: "reversed", gridcolor: "#eee" },
      margin: { l: 60, r: 20, t: 10, b: 50 },
      showlegend: false,
    });
    facts.textContent = "Best period " + p.best_period_d.toPrecision(6) + " ± " + p.best_period_err_d.toPrecision(2) +
      " d, false-alarm probability " + fapText(p.false_alarm_probability) + ", semi-amplitude " +
      p.amplitude_mag.toFixed(3) + " mag, from " + p.n_points + " points over " + p.baseline_d.toFixed(1) + " d.";
    return Promise.all([
      Plotly.react(spectrum, [traceSpectrum], layoutSpectrum, CPCS.CONFIG),
      Plotly.react(folded, [traceFolded], layoutFolded, CPCS.CONFIG),
    ]);
  }

  chooser.addEventListener("change", () => {
    spectrum.dataset.ready = "";
    draw(Number(chooser.value)).then(() => { spectrum.dataset.ready = "1"; });
  });
  draw(0).then(() => { spectrum.dataset.ready = "1"; });
})();

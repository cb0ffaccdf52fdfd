/* Helpers shared by the CPCS plots (plotly.js is loaded before this file). */
(function () {
  "use strict";

  // One colour per filter, close to the colour of the light it passes; others get a palette colour.
  const BAND_COLOURS = {
    U: "#6a3d9a", u: "#8e44ad",
    B: "#1f5fbf", g: "#2e8b57", BP: "#3a7bd5",
    V: "#2ca02c", G: "#555555",
    R: "#d62728", r: "#e4572e",
    I: "#8c564b", i: "#b5651d", RP: "#a0522d",
    z: "#444444", y: "#7f7f7f",
    J: "#bcbd22", H: "#17becf", K: "#9467bd", Ks: "#9467bd",
  };
  const PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];
  // Blue to red, for a stable legend order.
  const BAND_ORDER = ["U", "u", "B", "BP", "g", "V", "G", "R", "r", "RP", "I", "i", "z", "y", "J", "H", "K", "Ks"];

  function bandColour(band, index) {
    return BAND_COLOURS[band] || PALETTE[index % PALETTE.length];
  }

  function bandOrder(a, b) {
    const ia = BAND_ORDER.indexOf(a), ib = BAND_ORDER.indexOf(b);
    if (ia !== ib) return (ia < 0 ? 1e3 : ia) - (ib < 0 ? 1e3 : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function mjdToUtc(mjd) {
    const date = new Date((mjd - 40587) * 86400000);
    return date.toISOString().replace("T", " ").slice(0, 19);
  }

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  const CONFIG = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d"],
  };

  function baseLayout(extra) {
    return Object.assign({
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 13, color: "#222" },
      margin: { l: 60, r: 20, t: 40, b: 50 },
      hovermode: "closest",
      plot_bgcolor: "#fff",
      paper_bgcolor: "#fff",
      hoverlabel: { bgcolor: "#fff", bordercolor: "#888", font: { color: "#111" } },
    }, extra);
  }

  window.CPCS = { bandColour, bandOrder, mjdToUtc, readJson, CONFIG, baseLayout };
})();

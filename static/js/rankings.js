// Trend chart of the regulator's ranking page, drawn with the vendored uPlot
// (static/js/uplot-1.6.32.min.js, see docs/rankings.md). The data comes from the
// element's data-trend attribute (the CSP forbids inline scripts); the same figures
// are in the table under the chart. Redrawn after htmx swaps the ranking.
(function () {
  var COLOURS = ["#0b6e4f", "#1f5fbf", "#b42318", "#8a4b00", "#6b3fa0", "#0e7490", "#a21caf", "#4d7c0f"];

  function draw(el) {
    if (el.dataset.drawn || typeof uPlot === "undefined") return;
    var data = JSON.parse(el.dataset.trend || "{}");
    if (!data.months || !data.series || data.series.length === 0) return;
    el.dataset.drawn = "1";
    var xs = data.months.map(function (_, i) { return i; });
    var opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 280,
      scales: { x: { time: false }, y: { range: [0, 100] } },
      axes: [
        { values: function (u, splits) { return splits.map(function (i) { return data.months[i] || ""; }); } },
        { label: el.dataset.labelMean || "" }
      ],
      series: [{ label: el.dataset.labelMonth || "", value: function (u, i) { return i == null ? "--" : data.months[i]; } }].concat(data.series.map(function (s, i) {
        return { label: s.name, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false,
                 points: { show: true, size: 5 } };
      }))
    };
    new uPlot(opts, [xs].concat(data.series.map(function (s) { return s.values; })), el);
  }

  function drawAll() {
    document.querySelectorAll(".ranking-trend[data-trend]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
})();

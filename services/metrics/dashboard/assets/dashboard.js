// Draws every chart of the page from its Vega-Lite spec (a JSON script beside it).
// Each chart's element gets data-rendered="true" once drawn, or "error" with the reason.
(function () {
  "use strict";
  var charts = document.querySelectorAll("[data-chart]");
  var pending = [];
  charts.forEach(function (element) {
    var spec = JSON.parse(document.getElementById(element.dataset.chart).textContent);
    pending.push(
      vegaEmbed(element, spec, { actions: false, renderer: "svg" }).then(
        function () { element.dataset.rendered = "true"; },
        function (error) {
          element.dataset.rendered = "error";
          element.textContent = "The chart could not be drawn (" + error + "); the table below has the figures.";
        }
      )
    );
  });
  Promise.all(pending).then(function () { document.body.dataset.chartsDrawn = "true"; });
})();

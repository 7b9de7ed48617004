// The customer 360's charts, drawn with the vendored Chart.js from the JSON the page carries (#chart-data).
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var palette = ["#3366aa", "#dd7722", "#33996b", "#aa3377", "#7766cc", "#999933", "#66aacc", "#cc6655"];
  function colored(series, fill) {
    return series.map(function (s, i) {
      var c = palette[i % palette.length];
      return { label: s.label, data: s.data, backgroundColor: c, borderColor: c, fill: fill, pointRadius: 2, tension: 0 };
    });
  }
  var common = { animation: false, responsive: true, maintainAspectRatio: false };
  new Chart(document.getElementById("chart-usage"), {
    type: "bar",
    data: { labels: data.usage.labels, datasets: colored(data.usage.series, true) },
    options: Object.assign({ scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }, common)
  });
  var money = colored(data.money.series, false).map(function (d) {
    d.data = d.data.map(function (v) { return v === null ? null : v / 100; });
    return d;
  });
  new Chart(document.getElementById("chart-money"), {
    type: "line",
    data: { labels: data.money.labels, datasets: money },
    options: Object.assign({ scales: { y: { title: { display: true, text: "amount" } } } }, common)
  });
  var daily = colored(data.daily.series, false).map(function (d) { d.pointRadius = 0; return d; });
  daily.push({ type: "scatter", label: "anomaly", data: data.daily.anomalies, backgroundColor: "#d62728",
               borderColor: "#d62728", pointRadius: 6, pointStyle: "triangle" });
  new Chart(document.getElementById("chart-daily"), {
    type: "line",
    data: { labels: data.daily.labels, datasets: daily },
    options: Object.assign({ scales: { x: { type: "category", ticks: { maxTicksLimit: 12 } }, y: { stacked: false, beginAtZero: true } } }, common)
  });
}());

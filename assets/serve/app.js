// runner serve: draws the curves of the runs or the study named by each .chart element,
// and redraws them every few seconds while something is still running.
"use strict";

const REFRESH_MS = 3000;

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

// One x axis (elapsed seconds) shared by every run: each run's values at its own times,
// null elsewhere, so lines span the gaps.
function align(series) {
  const xs = [...new Set(series.flatMap((s) => s.x))].sort((a, b) => a - b);
  const ys = series.map((s) => {
    const at = new Map(s.x.map((x, i) => [x, s.y[i]]));
    return xs.map((x) => (at.has(x) ? at.get(x) : null));
  });
  return [xs, ...ys];
}

function draw(el, title, yLabel, series) {
  el.innerHTML = "";
  const data = align(series);
  const opts = {
    title,
    width: Math.min(el.clientWidth || 900, 1000),
    height: 300,
    spanGaps: true,
    scales: { x: { time: false } },
    axes: [{ label: "elapsed seconds" }, { label: yLabel }],
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2 }))],
  };
  new uPlot(opts, data, el);
}

const COLOURS = ["#d81b60", "#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41"];

async function runCharts(el) {
  const runs = el.dataset.runs.split(" ").filter((r) => r);
  if (runs.length === 0) return;
  const results = await Promise.all(runs.map((r) => getJson("/api/run/" + r + "/metrics")));
  const exact = results.some((r) => r.rows.some((row) => row.val_exact !== null));
  const field = exact ? "val_exact" : "val_loss";
  const series = (f) =>
    results.map((r, i) => ({
      label: runs[i],
      x: r.rows.map((row) => row.elapsed_s),
      y: r.rows.map((row) => row[f]),
    }));
  let top = el.querySelector(".top") || el.appendChild(Object.assign(document.createElement("div"), { className: "top" }));
  let bottom = el.querySelector(".bottom") || el.appendChild(Object.assign(document.createElement("div"), { className: "bottom" }));
  draw(top, exact ? "validation exact match" : "validation loss", field, series(field));
  draw(bottom, "training loss", "train_loss", series("train_loss"));
  if (results.some((r) => !r.done)) setTimeout(() => runCharts(el), REFRESH_MS);
}

async function studyChart(el) {
  const study = await getJson("/api/study/" + el.dataset.study);
  const better = study.maximise ? Math.max : Math.min;
  let best = null;
  const points = study.points.sort((a, b) => a[0] - b[0]);
  const bests = points.map((p) => (best = best === null ? p[1] : better(best, p[1])));
  el.innerHTML = "";
  new uPlot(
    {
      title: "best " + study.objective + " so far",
      width: Math.min(el.clientWidth || 900, 1000),
      height: 300,
      scales: { x: { time: false } },
      axes: [{ label: "trial" }, { label: study.objective }],
      series: [{}, { label: "trial", stroke: "#90a4ae", points: { show: true }, width: 0 }, { label: "best so far", stroke: "#d81b60", width: 2 }],
    },
    [points.map((p) => p[0]), points.map((p) => p[1]), bests],
    el
  );
  const show = document.getElementById("show");
  if (show) show.textContent = study.show;
  setTimeout(() => studyChart(el), REFRESH_MS);
}

window.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".chart[data-runs]")) runCharts(el).catch(console.error);
  for (const el of document.querySelectorAll(".chart[data-study]")) studyChart(el).catch(console.error);
});

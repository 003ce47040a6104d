// Cairn dashboard charts: the last hour from /api/dashboard/series (the BFF samples the services every
// sample_s, docs/bff.md), drawn with the vendored uPlot (static/vendor/uplot). The first request fetches the
// whole history, then each poll asks only for the points after the newest one it has.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  // Known outcomes keep their colours; any other series takes the next colour of the palette.
  const FIXED = { ok: "#1a7f37", fallback: "#b35900", error: "#c62828", p50: "#2f6fde", p95: "#8e44ad" };
  const PALETTE = ["#2f6fde", "#b35900", "#8e44ad", "#00838f", "#c62828", "#6d4c41", "#1a7f37", "#5d6d7e"];

  // A series is null where its service did not answer (a gap); a reason absent from one interval is 0.
  function byKey(points, field) {
    const keys = [...new Set(points.flatMap((p) => Object.keys(p[field] || {})))].sort();
    const series = {};
    for (const k of keys) series[k] = points.map((p) => (p[field] ? p[field][k] || 0 : null));
    // Nothing happened yet (often the good news for fallbacks): a line at zero says so better than no chart.
    if (!keys.length) series.none = points.map((p) => (p[field] ? 0 : null));
    return series;
  }

  const fmtS = (v) => (v === null || v === undefined ? "–" : v < 1 ? Math.round(v * 1000) + " ms" : v.toFixed(2) + " s");
  const fmtN = (v) => (v === null || v === undefined ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(1));

  const CHARTS = [
    { id: "chart-ttft", fmt: fmtS, series: (pts) => ({ p50: pts.map((p) => p.ttft_p50_s), p95: pts.map((p) => p.ttft_p95_s) }) },
    { id: "chart-tps", fmt: fmtN, series: (pts) => ({ "tokens/s": pts.map((p) => p.tokens_per_s) }) },
    { id: "chart-requests", fmt: fmtN, series: (pts) => byKey(pts, "requests_per_min") },
    { id: "chart-fallbacks", fmt: fmtN, series: (pts) => byKey(pts, "fallbacks_per_min") },
    { id: "chart-queue", fmt: fmtN, series: (pts) => ({ waiting: pts.map((p) => p.queue_depth) }) },
  ];

  const state = { points: [], sampleS: 10, historyS: 3600, plots: {}, timer: null };

  function colour(name, i) {
    return FIXED[name] || PALETTE[i % PALETTE.length];
  }

  function size(el) {
    return { width: Math.max(240, el.clientWidth), height: 170 };
  }

  function makePlot(chart, el, keys, data) {
    const opts = {
      ...size(el),
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, chart.fmt === fmtS ? 0.01 : 1)] } },
      axes: [{ stroke: "#475467" }, { stroke: "#475467", size: 56, values: (u, ticks) => ticks.map(chart.fmt) }],
      series: [
        { value: (u, v) => (v === null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
        ...keys.map((k, i) => ({ label: k, stroke: colour(k, i), width: 2, spanGaps: false, value: (u, v) => chart.fmt(v) })),
      ],
    };
    const plot = new uPlot(opts, data, el);
    // The canvas is a picture: name it for screen readers; the line under the chart states the latest values.
    const canvas = el.querySelector("canvas");
    if (canvas) {
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", el.parentElement.querySelector("figcaption").textContent + ", last hour");
    }
    return plot;
  }

  function draw() {
    const pts = state.points;
    for (const chart of CHARTS) {
      const el = byId(chart.id);
      const series = chart.series(pts);
      const keys = Object.keys(series);
      const data = [pts.map((p) => p.t), ...keys.map((k) => series[k])];
      const current = state.plots[chart.id];
      const signature = keys.join("\u0000");
      if (current && current.signature === signature) {
        current.plot.setData(data);
      } else {
        // A new outcome or reason code appeared: a chart with one more series (uPlot's series are fixed).
        if (current) current.plot.destroy();
        el.replaceChildren();
        state.plots[chart.id] = keys.length ? { plot: makePlot(chart, el, keys, data), signature } : null;
        if (!keys.length) el.textContent = "nothing yet";
      }
      el.dataset.points = String(pts.length);
      const last = pts[pts.length - 1];
      const now = byId(chart.id + "-now");
      now.textContent = last
        ? "now: " + (keys.map((k) => k + " " + chart.fmt(series[k][series[k].length - 1])).join(" · ") || "none")
        : "";
    }
  }

  async function poll() {
    const since = state.points.length ? state.points[state.points.length - 1].t : null;
    const status = byId("charts-status");
    try {
      const resp = await fetch("/api/dashboard/series" + (since === null ? "" : "?since=" + since));
      if (!resp.ok) {
        status.textContent = "history unavailable: HTTP " + resp.status;
        return;
      }
      const body = await resp.json();
      state.sampleS = body.sample_s;
      state.historyS = body.history_s;
      const horizon = Date.now() / 1000 - state.historyS;
      state.points = [...state.points, ...body.points].filter((p) => p.t > horizon);
      status.textContent = !state.sampleS
        ? "· sampling is off (BFF_DASHBOARD_SAMPLE_S=0)"
        : "· a point every " + state.sampleS + " s" + (state.points.length ? "" : ", the first one soon");
      draw();
    } catch (err) {
      status.textContent = "· BFF unreachable: " + err.message;
    } finally {
      clearTimeout(state.timer);
      if (state.sampleS) state.timer = setTimeout(poll, Math.max(1, state.sampleS) * 1000);
    }
  }

  window.addEventListener("resize", () => {
    for (const chart of CHARTS) {
      const current = state.plots[chart.id];
      if (current) current.plot.setSize(size(byId(chart.id)));
    }
  });

  document.addEventListener("DOMContentLoaded", poll);
})();

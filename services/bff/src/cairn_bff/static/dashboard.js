// Cairn dashboard: polls /api/dashboard (the services' /metrics, summarised by the BFF) every 2 s.
"use strict";

const $ = (id) => document.getElementById(id);

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s";
}

function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fillTable(id, rows, empty) {
  const table = $(id);
  const trs = rows.map(([k, v, cls]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    a.textContent = k;
    const b = document.createElement("td");
    b.textContent = v;
    if (cls) b.className = cls;
    tr.append(a, b);
    return tr;
  });
  if (!trs.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.textContent = empty || "none";
    td.className = "hint";
    tr.append(td);
    trs.push(tr);
  }
  table.replaceChildren(...trs);
}

const entries = (obj) => Object.entries(obj || {}).sort();

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  return n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" : Math.round(n / 1e3) + " kB";
}

// Each model of the gateway with what its manifest says (docs/models.md, "Model manifests").
function manifestRows(models) {
  const rows = [];
  for (const m of models || []) {
    const why = m.reason_code ? " · " + m.reason_code : "";
    rows.push([m.model, m.state + why, m.state === "loaded" ? "up" : "down"]);
    if (m.notice) rows.push(["  note", m.notice]);
    const man = m.manifest;
    if (!man) {
      rows.push(["  manifest", "none: another server holds this model"]);
      continue;
    }
    rows.push(["  manifest", man.name + (man.origin === "first_load" ? " (written at first load)" : "")]);
    if (man.file) rows.push(["  file", man.file + " · " + fmtBytes(man.size_bytes) + " · sha256 " + man.sha256_short + "…"]);
    rows.push(["  licence", man.licence]);
    rows.push(["  source", man.source]);
    const params = [man.quantisation, man.context_size ? man.context_size + " tokens" : null].filter(Boolean);
    rows.push(["  quantisation · context", params.join(" · ") || "–"]);
    rows.push(["  prompt format", man.prompt_format]);
  }
  return rows;
}

function render(d) {
  const gw = d.gateway;
  const qs = d.query;
  if (gw.up) {
    $("ttft").textContent = fmtSeconds(gw.time_to_first_token_s.p50);
    $("ttft-detail").textContent =
      "p50 · p95 " + fmtSeconds(gw.time_to_first_token_s.p95) + " · " + gw.time_to_first_token_s.count + " streams";
    $("tps").textContent = fmtNum(gw.tokens_per_second.mean);
    $("tps-detail").textContent = "mean · p50 " + fmtNum(gw.tokens_per_second.p50);
    $("requests").textContent = fmtNum(gw.requests_total);
    const reasons = entries(gw.requests_by_reason).filter(([k]) => k !== "none");
    fillTable("requests-table", [
      ...entries(gw.requests_by_status).map(([k, v]) => [k, fmtNum(v)]),
      ...reasons.map(([k, v]) => ["  " + k, fmtNum(v)]),
    ]);
    fillTable("queue-table", entries(gw.queue_depth).map(([k, v]) => [k, fmtNum(v) + " waiting · " + fmtNum(gw.in_flight[k] || 0) + " running"]));
    fillTable("health-table", [
      ...entries(gw.provider_up).map(([k, v]) => [k, v ? "up" : "down", v ? "up" : "down"]),
      ...entries(gw.model_crashes || {}).map(([k, v]) => [k + ": model process crashes", fmtNum(v) + " (restarted by the gateway)", v ? "down" : "up"]),
    ], "no health check yet");
    fillTable("models-table", manifestRows(gw.models), "no models listed");
  } else {
    $("ttft").textContent = $("tps").textContent = $("requests").textContent = "–";
    fillTable("health-table", [["LLM gateway", "unreachable (" + gw.error + ")", "down"]]);
    fillTable("models-table", [], "LLM gateway unreachable");
  }
  const fallbacks = {};
  for (const src of [gw.fallbacks_by_reason, qs.fallbacks_by_reason]) {
    for (const [k, v] of entries(src)) fallbacks[k] = (fallbacks[k] || 0) + v;
  }
  fillTable("fallbacks-table", entries(fallbacks).map(([k, v]) => [k, fmtNum(v)]), "no fallbacks");
  if (qs.up) {
    fillTable("qs-table", [
      ["requests", fmtNum(qs.requests_total)],
      ...entries(qs.cache).map(([k, v]) => ["cache " + k, fmtNum(v)]),
      ["retrieval p50", fmtSeconds(qs.retrieval_latency_s.p50)],
      ["answers rated 👍", fmtNum(qs.feedback.up)],
      ["answers rated 👎", fmtNum(qs.feedback.down)],
    ]);
  } else {
    fillTable("qs-table", [["query service", "unreachable (" + qs.error + ")", "down"]]);
  }
  fillTable("bff-table", [
    ["streams now", fmtNum(d.bff.streams_active)],
    ...entries(d.bff.streams_by_outcome).map(([k, v]) => ["streams " + k, fmtNum(v)]),
    ...entries(d.bff.rejected_by_reason).map(([k, v]) => ["refused " + k, fmtNum(v)]),
  ]);
  $("updated").textContent = "updated " + new Date(d.at * 1000).toLocaleTimeString();
}

async function poll() {
  try {
    const resp = await fetch("/api/dashboard");
    if (resp.ok) render(await resp.json());
    else $("updated").textContent = "dashboard unavailable: HTTP " + resp.status;
  } catch (err) {
    $("updated").textContent = "BFF unreachable: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  poll();
  setInterval(poll, 2000);
});

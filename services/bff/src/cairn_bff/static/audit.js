// Cairn audit page: reads /api/admin/audit with the admin key. Plain JS; all text is set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let nextAfter = null;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function adminHeaders() {
  return { Authorization: "Bearer " + $("admin-key").value.trim() };
}

async function admin(path) {
  const resp = await fetch(path, { headers: adminHeaders() });
  if (!resp.ok) {
    let body = {};
    try { body = await resp.json(); } catch (_) { body = { message: resp.statusText }; }
    throw new Error((body.reason_code || "HTTP " + resp.status) + ": " + (body.message || ""));
  }
  return resp;
}

function filters() {
  const p = new URLSearchParams();
  // Dates are whole days in UTC: "until" includes its day.
  if ($("f-since").value) p.set("since", $("f-since").value + "T00:00:00.000Z");
  if ($("f-until").value) {
    const d = new Date($("f-until").value + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + 1);
    p.set("until", d.toISOString());
  }
  for (const [id, key] of [["f-outcome", "outcome"], ["f-reason", "reason_code"], ["f-q", "q"]]) {
    const v = $(id).value.trim();
    if (v) p.set(key, v);
  }
  return p;
}

function cut(text, n) {
  text = text || "";
  return text.length > n ? text.slice(0, n) + "…" : text;
}

function row(rec) {
  const tr = el("tr", "record");
  tr.dataset.outcome = rec.outcome;
  tr.tabIndex = 0;
  const rules = (rec.rules || []).map((r) => r.rule + " (" + r.action + ")").join(", ");
  const cells = [
    rec.at.replace("T", " ").slice(0, 19),
    rec.outcome,
    [rec.reason_code, rules].filter(Boolean).join(" · "),
    cut(rec.question, 80),
    cut(rec.answer, 120),
  ];
  for (const text of cells) tr.append(el("td", "", text));
  tr.addEventListener("click", () => openRecord(rec));
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openRecord(rec); });
  return tr;
}

async function load(more) {
  const status = $("audit-status");
  sessionStorage.setItem("cairn-admin-key", $("admin-key").value.trim());
  const p = filters();
  if (more && nextAfter !== null) p.set("after_id", String(nextAfter));
  status.textContent = "Loading…";
  status.className = "status";
  try {
    const body = await (await admin("/api/admin/audit?" + p.toString())).json();
    const tbody = $("audit-table").querySelector("tbody");
    if (!more) tbody.replaceChildren();
    for (const rec of body.records) tbody.append(row(rec));
    nextAfter = body.next_after_id;
    $("audit-more").hidden = nextAfter === null;
    const shown = tbody.children.length;
    status.textContent = shown ? shown + (shown === 1 ? " answer" : " answers") + " shown." : "No answers match.";
  } catch (err) {
    status.textContent = err.message;
    status.className = "status error";
  }
}

async function openRecord(rec) {
  $("rec-id").textContent = "#" + rec.id + " · " + rec.request_id;
  const fields = [
    ["Time", rec.at], ["Outcome", rec.outcome], ["Reason code", rec.reason_code || "–"],
    ["Rule", rec.rule || "–"], ["Rules that found something", (rec.rules || []).map((r) => r.rule + ": " + r.action + " on the " + r.target).join("; ") || "–"],
    ["Model", [rec.model, rec.provider].filter(Boolean).join(" · ") || "–"],
    ["Key", rec.key_id || "–"], ["Collection", rec.collection || "all"],
    ["Latency", rec.latency_ms + " ms"], ["Tokens", (rec.prompt_tokens || 0) + " in, " + (rec.completion_tokens || 0) + " out"],
    ["Trace", rec.trace_id || "–"],
    ["Rating", rec.feedback ? rec.feedback.rating + (rec.feedback.comment ? ": " + rec.feedback.comment : "") : "–"],
  ];
  $("rec-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", "", k), el("dd", "", v)]));
  $("rec-question").textContent = rec.question || "";
  $("rec-answer").textContent = rec.answer || "";
  $("rec-withheld-box").hidden = !rec.withheld;
  $("rec-withheld").textContent = rec.withheld || "";
  const cited = new Set(rec.cited || []);
  const items = (rec.retrieved || []).map((id) => {
    const li = el("li", cited.has(id) ? "source cited" : "source");
    li.dataset.chunkId = id;
    li.append(el("strong", "", id + (cited.has(id) ? " (cited)" : "")), el("p", "snippet", "…"));
    return li;
  });
  $("rec-sources").replaceChildren(...items);
  $("record-dialog").showModal();
  // The chunks as they are now; a chunk deleted since shows as gone. Local mode (or the page's API key) reads them.
  for (const li of items) {
    const key = sessionStorage.getItem("cairn-api-key");
    const headers = key ? { Authorization: "Bearer " + key } : {};
    try {
      const resp = await fetch("/api/chunks/" + encodeURIComponent(li.dataset.chunkId), { headers });
      const chunk = resp.ok ? await resp.json() : null;
      li.querySelector(".snippet").textContent = chunk
        ? (chunk.title ? chunk.title + ": " : "") + cut(chunk.text, 400)
        : "(no longer in the store)";
    } catch (_) {
      li.querySelector(".snippet").textContent = "(could not be read)";
    }
  }
}

async function exportLines() {
  try {
    const p = filters();
    p.set("format", "jsonl");
    const blob = await (await admin("/api/admin/audit?" + p.toString())).blob();
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = "cairn-audit.jsonl";
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    $("audit-status").textContent = err.message;
  }
}

async function verify() {
  const chain = $("chain");
  try {
    const v = await (await admin("/api/admin/audit/verify")).json();
    chain.dataset.ok = String(v.ok);
    chain.textContent = v.ok
      ? "Chain intact: " + v.records + " records, head " + v.head.slice(0, 12) + "…"
      : "Chain broken at record " + (v.first_bad_id || "end") + ": " + v.problem;
  } catch (err) {
    chain.textContent = err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("admin-key").value = sessionStorage.getItem("cairn-admin-key") || "";
  $("audit-filters").addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  $("audit-more").addEventListener("click", () => load(true));
  $("audit-export").addEventListener("click", exportLines);
  $("audit-verify").addEventListener("click", verify);
  if ($("admin-key").value) load(false);
});

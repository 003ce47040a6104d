// Cairn chat page: plain JS, no build step. All text from the server is set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the answer being streamed: {controller, el}

// --- HTTP helpers --------------------------------------------------------------------------------------------

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = $("api-key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  return headers;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  const resp = await fetch(path, opts);
  if (!resp.ok) {
    let body = {};
    try { body = await resp.json(); } catch (_) { body = { message: resp.statusText }; }
    const err = new Error((body.reason_code || "HTTP " + resp.status) + ": " + (body.message || ""));
    err.body = body;
    err.status = resp.status;
    throw err;
  }
  return resp;
}

// Reads a text/event-stream body and calls onEvent(name, data) per frame, as frames arrive.
async function readSSE(resp, onEvent) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed;
      try { parsed = JSON.parse(data.join("\n")); } catch (_) { continue; } // a frame cut in half
      onEvent(name, parsed);
    }
  }
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- models and documents ------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model-select");
  try {
    const data = await (await api("/api/models")).json();
    for (const m of data.data || []) {
      if (m.kind === "embedding") continue;
      const opt = el("option", "", m.id + (m.provider ? " · " + m.provider : "") + (m.default ? " (default)" : ""));
      opt.value = m.default ? "" : m.id;
      if (m.default) select.replaceChildren(opt);
      else select.append(opt);
    }
  } catch (err) {
    select.title = "Models unavailable: " + err.message;
  }
}

// The documents list (search, paging, collections) lives in library.js; uploads in uploads.js.
function loadDocs() {
  return Cairn.loadDocs();
}

// --- chunks (cited sources) ----------------------------------------------------------------------------------

// answerText: the answer that cited the chunk, whose sentences are marked in the chunk (highlight.js).
async function openChunk(chunkId, answerText) {
  const dialog = $("chunk-dialog");
  $("chunk-title").textContent = chunkId;
  $("chunk-meta").textContent = "";
  $("chunk-text").textContent = "Loading…";
  if (!dialog.open) dialog.showModal();
  try {
    const chunk = await (await api("/api/chunks/" + encodeURIComponent(chunkId))).json();
    $("chunk-title").textContent = chunk.title || chunk.document_id;
    $("chunk-meta").textContent = chunk.chunk_id + (chunk.url ? " · " + chunk.url : "");
    Cairn.showChunkText($("chunk-text"), chunk.text, answerText);
  } catch (err) {
    $("chunk-text").textContent = "Cannot load this source: " + err.message;
  }
}

// --- one answer ------------------------------------------------------------------------------------------------

function newAnswer() {
  const box = el("article", "msg assistant");
  box.dataset.state = "streaming";
  box.dataset.deltas = "0";
  const parts = {
    meta: el("div", "meta", "…"),
    notice: el("div", "notice"),
    answer: el("div", "answer"),
    warnings: el("div", "warnings"),
    citations: el("ol", "citations"),
    sources: el("div", "sources"),
    footer: el("div", "footer hint"),
  };
  parts.notice.hidden = true;
  parts.warnings.hidden = true;
  box.append(parts.meta, parts.notice, parts.answer, parts.warnings, parts.citations, parts.sources, parts.footer);
  return { box, parts, text: "", sources: [], citations: [], numbers: new Map(), fallback: null, error: null };
}

// Answer text as light Markdown (markdown.js), with [chunk-id] markers turned into numbered, clickable
// citations once they are known.
function renderAnswer(a) {
  Cairn.renderMarkdown(a.parts.answer, a.text, (chunkId) => {
    const n = a.numbers.get(chunkId);
    if (n === undefined) return null;
    const ref = el("button", "ref", "[" + n + "]");
    ref.type = "button";
    ref.title = chunkId;
    ref.addEventListener("click", () => openChunk(chunkId, a.text));
    return ref;
  });
}

function renderCitations(a) {
  const items = a.citations.map((c, i) => {
    a.numbers.set(c.chunk_id, i + 1);
    const li = el("li", "citation");
    const link = el("button", "link", c.title || c.chunk_id);
    link.type = "button";
    link.dataset.chunkId = c.chunk_id;
    link.addEventListener("click", () => openChunk(c.chunk_id, a.text));
    li.append(link, el("span", "hint", " " + c.chunk_id));
    return li;
  });
  a.parts.citations.replaceChildren(...items);
  renderAnswer(a);
}

function renderSourcesAsResults(a, heading) {
  if (!a.sources.length) return;
  const list = el("ol", "results");
  for (const s of a.sources) {
    const li = el("li");
    const link = el("button", "link", s.title || s.chunk_id);
    link.type = "button";
    link.addEventListener("click", () => openChunk(s.chunk_id));
    li.append(link, el("p", "snippet", s.snippet || (s.text || "").slice(0, 300)));
    list.append(li);
  }
  a.parts.sources.replaceChildren(el("h4", "", heading || "Most relevant passages"), list);
}

// A policy rule with action "warn" found something; the answer stands, with this beside it.
function showWarning(a, w) {
  a.parts.warnings.hidden = false;
  a.parts.warnings.append(el("p", "warning", "⚠ " + w.message + " (" + w.rule + ")"));
}

function showNotice(a, kind, title, message) {
  a.parts.notice.hidden = false;
  a.parts.notice.className = "notice " + kind;
  a.parts.notice.replaceChildren(el("strong", "", title), el("span", "", " " + (message || "")));
}

function handleEvent(a, name, data) {
  switch (name) {
    case "sources":
      a.sources = data.sources || [];
      break;
    case "meta":
      a.parts.meta.textContent = [data.model, data.provider].filter(Boolean).join(" · ");
      break;
    case "delta":
      a.text += data.text;
      a.box.dataset.deltas = String(Number(a.box.dataset.deltas) + 1);
      renderAnswer(a);
      break;
    case "citations":
      a.citations = data.citations || [];
      renderCitations(a);
      break;
    case "redacted":
      // A policy rule removed personal data from the answer drawn so far: show its redacted text instead.
      a.text = data.text;
      renderAnswer(a);
      break;
    case "warning":
      showWarning(a, data);
      break;
    case "fallback":
      a.fallback = data;
      if (data.discard_answer && data.policy_rule) {
        // Withheld by policy (offensive text, personal data, a blocked term): nothing of it stays on screen.
        a.text = "";
        renderAnswer(a);
      }
      if (data.discard_answer) {
        a.parts.answer.classList.add("discarded");
        a.parts.answer.title = data.policy_rule
          ? "The model's answer was withheld by the policy rule " + data.policy_rule + "."
          : "The model's answer was withdrawn: it could not be checked against your documents.";
        // A withdrawn answer keeps no citations: they would lend it the sources' authority.
        a.citations = [];
        renderCitations(a);
      }
      if (a.parts.meta.textContent === "…") a.parts.meta.textContent = "no model answer";
      if (data.passages) {
        // Middling evidence (WEAK_EVIDENCE): passages near the question, visibly not an answer.
        a.box.dataset.passages = "true";
        showNotice(a, "passages", "Closest passages, not an answer.", data.message);
        renderSourcesAsResults(a, "Closest passages: check whether they answer your question");
        break;
      }
      showNotice(a, "fallback", "Fallback answer (" + data.reason_code + ").", data.message);
      // NO_CONTEXT means nothing retrieved was relevant: listing it as "relevant passages" would mislead.
      if (data.reason_code !== "NO_CONTEXT") renderSourcesAsResults(a);
      break;
    case "error":
      a.error = data;
      break;
    case "done":
      finishAnswer(a, data);
      break;
  }
}

function finishAnswer(a, done) {
  a.box.dataset.state = done.status === "ok" ? "done" : done.status || "error";
  if (done.status === "ok" && done.answered_by === "fallback_provider") {
    // A good answer, but not the model's: say who wrote it and why the model did not.
    a.box.dataset.answeredBy = "fallback_provider";
    const why = done.reason_code ? " (" + done.reason_code + ")" : "";
    const text = done.provider === "sources"
      ? "No model answered" + why + ": this is quoted word for word from the best-matching source."
      : "The model did not answer" + why + "; the fallback provider " + (done.provider || "") + " did.";
    showNotice(a, "fallback", "Answered without the model.", text);
  }
  if (done.status !== "ok" && !a.fallback) {
    const code = done.reason_code || (a.error && a.error.reason_code) || "ERROR";
    const message = (a.error && a.error.message) || "The answer could not be completed.";
    showNotice(a, done.status === "fallback" ? "fallback" : "error", "Fallback answer (" + code + ").", message);
    renderSourcesAsResults(a);
  }
  const bits = [];
  if (done.stop_reason) bits.push("stop: " + done.stop_reason);
  if (done.usage && done.usage.completion_tokens) bits.push(done.usage.completion_tokens + " tokens");
  if (done.latency_ms) bits.push(done.latency_ms < 1 ? "<1 ms" : Math.round(done.latency_ms) + " ms");
  a.parts.footer.textContent = bits.join(" · ");
}

function setBusy(busy) {
  $("send-btn").disabled = busy;
  $("stop-btn").disabled = !busy;
}

// Ask `question` in the open conversation (one is created on the first question), or, with
// `opts.regenerate`, answer its last question again.
async function ask(question, opts) {
  const regenerate = Boolean(opts && opts.regenerate);
  const messages = $("messages");
  if (!regenerate) messages.append(el("article", "msg user", question));
  const a = newAnswer();
  messages.append(a.box);
  const controller = new AbortController();
  current = { controller, a };
  setBusy(true);
  const body = regenerate ? { regenerate: true, stream: true } : { content: question, stream: true };
  const model = $("model-select").value;
  if (model) body.model = model;
  try {
    const id = await Cairn.ensureConversation();
    const resp = await api("/api/conversations/" + encodeURIComponent(id) + "/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    a.requestId = resp.headers.get("X-Request-ID");
    await readSSE(resp, (name, data) => handleEvent(a, name, data));
    if (a.box.dataset.state === "streaming") {
      a.box.dataset.state = "error";
      showNotice(a, "error", "Connection lost.", "The answer stopped before it was complete.");
    }
  } catch (err) {
    if (err.name === "AbortError") {
      a.box.dataset.state = "stopped";
      if (a.parts.meta.textContent === "…") a.parts.meta.textContent = "";
      a.parts.footer.textContent = "Stopped: generation cancelled.";
    } else {
      a.box.dataset.state = "error";
      showNotice(a, "error", "Request failed.", err.message);
    }
  } finally {
    current = null;
    setBusy(false);
    Cairn.addActions(a);
    Cairn.refreshActions();
    Cairn.loadConversations(); // the first question titles the chat; the list is newest first
    messages.scrollTop = messages.scrollHeight;
  }
}

// --- the model's state: a banner while it is not ready (first run: llama.cpp compiling) --------------------------

async function pollStatus() {
  const banner = $("status-banner");
  let ready = false;
  try {
    const resp = await fetch("/api/status", { headers: authHeaders() });
    const body = await resp.json();
    ready = body.status === "ready";
    if (!ready) {
      const lead = body.status === "degraded"
        ? "The model is not available yet; answers are quoted from your documents meanwhile. "
        : "No model can answer right now; you will get search results. ";
      banner.replaceChildren(el("strong", "", lead), el("span", "", body.message || ""));
      banner.dataset.state = body.status || "unavailable";
    }
  } catch (_) {
    ready = false; // the BFF itself is unreachable: keep the last banner, try again
  }
  banner.hidden = ready;
  setTimeout(pollStatus, ready ? 60000 : 5000);
}

// --- wiring ----------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = $("api-key");
  keyInput.value = sessionStorage.getItem("cairn-api-key") || "";
  keyInput.addEventListener("change", () => {
    sessionStorage.setItem("cairn-api-key", keyInput.value.trim());
    loadModels();
    loadDocs();
  });
  Cairn.initLibrary({ api });
  Cairn.initUploads({ headers: authHeaders, onUploaded: loadDocs });
  Cairn.initSources({ onSynced: loadDocs });
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("question").value.trim();
    if (!q || current) return;
    $("question").value = "";
    ask(q);
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("stop-btn").addEventListener("click", () => { if (current) current.controller.abort(); });
  $("new-chat").addEventListener("click", () => Cairn.newChat());
  loadModels();
  loadDocs();
  pollStatus();
  const open = conversationFromHash();
  if (open) Cairn.openConversation(open);
  Cairn.loadConversations();
});

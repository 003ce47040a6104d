// Cairn chat page: the conversation list (new, open, rename, delete) and drawing a stored conversation again.
// Loaded before app.js; uses its helpers (api, el, newAnswer, …) once the page has loaded.
"use strict";

window.Cairn = window.Cairn || {};

const conv = (Cairn.conv = { id: null });

// The open conversation lives in the address (#c=<id>), so a reload opens it again.
function conversationFromHash() {
  const m = /^#c=([A-Za-z0-9]+)$/.exec(location.hash);
  return m ? m[1] : null;
}

function setConversation(id) {
  conv.id = id;
  history.replaceState(null, "", id ? "#c=" + id : location.pathname);
  for (const li of document.querySelectorAll("#conv-list .conv")) {
    li.classList.toggle("current", li.dataset.id === id);
    const open = li.querySelector(".conv-open");
    if (open) open.setAttribute("aria-current", li.dataset.id === id ? "true" : "false");
  }
}

Cairn.loadConversations = async function loadConversations() {
  const list = document.getElementById("conv-list");
  try {
    const data = await (await api("/api/conversations?limit=100")).json();
    list.replaceChildren(...data.conversations.map(convItem));
    if (!list.children.length) list.append(el("li", "hint", "No chats yet."));
    setConversation(conv.id);
  } catch (err) {
    list.replaceChildren(el("li", "error", "Cannot list chats: " + err.message));
  }
};

function convItem(c) {
  const li = el("li", "conv");
  li.dataset.id = c.id;
  const open = el("button", "conv-open", c.title);
  open.type = "button";
  open.addEventListener("click", () => Cairn.openConversation(c.id));
  const rename = el("button", "conv-rename icon", "✎");
  rename.type = "button";
  rename.setAttribute("aria-label", "Rename " + c.title);
  rename.addEventListener("click", () => startRename(li, c));
  const del = el("button", "conv-delete icon", "✕");
  del.type = "button";
  del.setAttribute("aria-label", "Delete " + c.title);
  del.addEventListener("click", async () => {
    try {
      await api("/api/conversations/" + encodeURIComponent(c.id), { method: "DELETE" });
    } catch (err) {
      li.append(el("span", "error", " " + err.message));
      return;
    }
    if (conv.id === c.id) Cairn.newChat();
    Cairn.loadConversations();
  });
  li.append(open, rename, del);
  return li;
}

function startRename(li, c) {
  const input = el("input", "conv-title-input");
  input.value = c.title;
  input.maxLength = 200;
  input.setAttribute("aria-label", "New title");
  li.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== c.title) {
      try {
        await api("/api/conversations/" + encodeURIComponent(c.id), {
          method: "PATCH",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ title }),
        });
      } catch (_) { /* the list below shows the title that was kept */ }
    }
    Cairn.loadConversations();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

Cairn.newChat = function newChat() {
  if (current) current.controller.abort();
  setConversation(null);
  document.getElementById("messages").replaceChildren();
  document.getElementById("question").focus();
};

// The conversation the next question goes to; created (titled by the server after the question) on first use.
Cairn.ensureConversation = async function ensureConversation() {
  if (conv.id) return conv.id;
  const created = await (await api("/api/conversations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
  })).json();
  setConversation(created.id);
  return created.id;
};

Cairn.openConversation = async function openConversation(id) {
  if (current) current.controller.abort();
  const messages = document.getElementById("messages");
  try {
    const data = await (await api("/api/conversations/" + encodeURIComponent(id))).json();
    setConversation(id);
    messages.replaceChildren();
    for (const m of data.messages) {
      if (m.role === "user") messages.append(el("article", "msg user", m.content));
      else messages.append(storedAnswer(m).box);
    }
    Cairn.refreshActions();
    messages.scrollTop = messages.scrollHeight;
  } catch (err) {
    if (err.status === 404) {
      Cairn.newChat(); // deleted elsewhere, or another browser's
      return;
    }
    messages.replaceChildren(el("p", "error", "Cannot open this chat: " + err.message));
  }
};

// An answer as it was stored: the same box a streamed one ends as.
function storedAnswer(m) {
  const a = newAnswer();
  a.requestId = m.request_id;
  a.parts.meta.textContent = m.model || (m.status === "ok" ? "" : "no model answer");
  if (m.status === "ok") {
    a.text = m.content;
    a.citations = m.citations || [];
    renderCitations(a);
    for (const w of m.warnings || []) showWarning(a, w);
    a.box.dataset.state = "done";
  } else {
    a.box.dataset.state = "fallback";
    if (m.reason_code === "WEAK_EVIDENCE") showNotice(a, "passages", "Closest passages, not an answer.", m.message || m.content);
    else showNotice(a, "fallback", "Fallback answer (" + (m.reason_code || "ERROR") + ").", m.message || m.content);
  }
  a.rating = m.rating || null;
  Cairn.addActions(a);
  return a;
}

// --- under each answer: copy, regenerate (the last one), rate --------------------------------------------------

Cairn.addActions = function addActions(a) {
  const bar = el("div", "actions");
  const copy = el("button", "act copy", "Copy");
  copy.type = "button";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(a.text || a.parts.notice.textContent);
      copy.textContent = "Copied";
    } catch (_) {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => { copy.textContent = "Copy"; }, 1500);
  });
  const regen = el("button", "act regenerate", "Regenerate");
  regen.type = "button";
  regen.addEventListener("click", () => { if (!current) regenerate(a); });
  bar.append(copy, regen);
  if (a.requestId) {
    for (const [rating, label, text] of [["up", "Good answer", "👍"], ["down", "Bad answer", "👎"]]) {
      const b = el("button", "act rate rate-" + rating, text);
      b.type = "button";
      b.setAttribute("aria-label", label);
      b.setAttribute("aria-pressed", String(a.rating === rating));
      b.addEventListener("click", () => rate(a, bar, rating, null));
      bar.append(b);
    }
  }
  a.parts.actions = bar;
  a.box.append(bar);
};

// Only the last answer of the conversation can be regenerated.
Cairn.refreshActions = function refreshActions() {
  const answers = document.querySelectorAll("#messages .msg.assistant");
  answers.forEach((box, i) => {
    const regen = box.querySelector(".act.regenerate");
    if (regen) regen.hidden = i !== answers.length - 1 || !conv.id;
  });
};

async function rate(a, bar, rating, comment) {
  const status = bar.querySelector(".rate-status") || bar.appendChild(el("span", "rate-status hint"));
  try {
    await api("/api/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ request_id: a.requestId, rating, comment }),
    });
  } catch (err) {
    status.textContent = "Rating failed: " + err.message;
    return;
  }
  a.rating = rating;
  for (const b of bar.querySelectorAll(".act.rate")) {
    b.setAttribute("aria-pressed", String(b.classList.contains("rate-" + rating)));
  }
  status.textContent = comment ? "Thanks for the comment." : "Thanks.";
  if (comment === null && !bar.querySelector(".comment-form")) {
    const form = el("form", "comment-form");
    const input = el("input", "comment");
    input.placeholder = "Add a comment (optional)";
    input.maxLength = 2000;
    input.setAttribute("aria-label", "Comment on this answer");
    const send = el("button", "act", "Send");
    send.type = "submit";
    form.append(input, send);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.value.trim()) rate(a, bar, a.rating, input.value.trim()).then(() => form.remove());
    });
    bar.append(form);
  }
}

async function regenerate(a) {
  a.box.remove();
  await ask(null, { regenerate: true });
}

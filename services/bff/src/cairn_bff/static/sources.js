// Sources: the connector sources (folder, website, git) that keep documents in sync (docs/connectors.md).
// The list, each source's last run, "Run now", and a form to add one. Everything under /api/connectors needs
// the admin key (BFF_ADMIN_KEY), typed here and kept for this tab only, as on the audit page. Plain JS; all
// text is set with textContent.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000; // while a run goes on, its counts are read again this often

  function node(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function headers(json) {
    const h = { Authorization: "Bearer " + $("src-admin-key").value.trim() };
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  async function call(method, path, body) {
    const resp = await fetch(path, {
      method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) throw new Error((data.reason_code || "HTTP " + resp.status) + ": " + (data.message || ""));
    return data;
  }

  function summary(src) {
    const s = src.status;
    if (src.running) return "running" + (s && s.state === "running" ? " · " + s.seen + " seen" : "");
    if (!s) return "never run";
    const counts = ["added", "changed", "renamed", "deleted", "failed"].filter((k) => s[k]).map((k) => s[k] + " " + k);
    const when = (s.finished_at || s.started_at || "").replace("T", " ").replace("Z", " UTC");
    return s.state + " · " + s.seen + " seen" + (counts.length ? " · " + counts.join(", ") : "") + " · " + when;
  }

  function row(src) {
    const li = node("li", "src-item");
    li.dataset.name = src.name;
    li.dataset.state = src.running ? "running" : (src.status ? src.status.state : "never");
    const head = node("div", "src-head");
    head.append(node("strong", null, src.name), node("span", "hint", " " + src.kind + " → " + src.collection));
    const run = node("button", null, "Run now");
    run.type = "button";
    run.disabled = src.running;
    run.addEventListener("click", async () => {
      run.disabled = true;
      try { await call("POST", "/api/connectors/" + encodeURIComponent(src.name) + "/run"); } catch (e) { show(e.message); }
      load();
    });
    head.append(run);
    li.append(head, node("div", "src-status hint", summary(src)));
    const s = src.status;
    if (s && s.error) li.append(node("div", "error", s.error.reason_code + ": " + s.error.message));
    if (s && s.failures && s.failures.length) {
      const list = node("ul", "src-failures");
      for (const f of s.failures.slice(0, 5)) list.append(node("li", "error", f.key + ": " + f.reason_code + " " + f.message));
      li.append(list);
    }
    return li;
  }

  function show(message) { $("src-status").textContent = message; }

  let timer = null;
  let onSynced = () => {};
  async function load() {
    clearTimeout(timer);
    if (!$("src-admin-key").value.trim()) return show("Type the admin key to see and add sources.");
    let data;
    try { data = await call("GET", "/api/connectors"); } catch (e) { return show(e.message); }
    show(data.sources.length ? "" : "No sources yet.");
    $("src-list").replaceChildren(...data.sources.map(row));
    if (data.sources.some((s) => s.running)) timer = setTimeout(load, POLL_MS);
    else onSynced(); // the documents list shows what the runs stored
  }

  function config(kind, target) {
    if (kind === "folder") return { path: target };
    if (kind === "git") return { repo: target };
    return target.endsWith(".xml") ? { sitemap_url: target } : { start_url: target };
  }

  async function add(event) {
    event.preventDefault();
    const kind = $("src-kind").value;
    const body = {
      name: $("src-name").value.trim(), kind, config: config(kind, $("src-target").value.trim()),
      collection: $("src-collection").value.trim() || "default",
      interval_s: Number($("src-interval").value) || 0,
    };
    try {
      await call("POST", "/api/connectors", body);
      await call("POST", "/api/connectors/" + encodeURIComponent(body.name) + "/run");
      $("src-form").reset();
    } catch (e) { return show(e.message); }
    load();
  }

  Cairn.initSources = function (opts) {
    onSynced = (opts && opts.onSynced) || onSynced;
    const key = $("src-admin-key");
    key.value = sessionStorage.getItem("cairn-admin-key") || "";
    key.addEventListener("change", () => { sessionStorage.setItem("cairn-admin-key", key.value.trim()); load(); });
    $("src-form").addEventListener("submit", add);
    $("src-refresh").addEventListener("click", load);
    $("sources").addEventListener("toggle", () => { if ($("sources").open) load(); });
  };
})(window.Cairn);

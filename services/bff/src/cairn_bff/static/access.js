// Who the page is for (GET /api/me): local mode, a signed-in user, a proxy's user or a key; a Sign in link when
// nobody is. For admins and a collection's owner, who may use each collection (GET/PUT
// /api/collections/{name}/permissions); for admins, the API keys (/api/admin/keys). Text goes in with
// textContent only.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  function $(id) { return document.getElementById(id); }
  function list(text) { return text.split(",").map((s) => s.trim()).filter(Boolean); }

  function showWho(me) {
    const who = $("who");
    who.textContent = "";
    if (me === null) {
      const link = document.createElement("a");
      link.href = "/auth/login";
      link.id = "sign-in";
      link.textContent = "Sign in";
      who.append(link);
      return;
    }
    if (me.via === "local") {
      who.textContent = "Local mode: one local user, who may do everything.";
      return;
    }
    const groups = me.groups.length ? " (" + me.groups.join(", ") + ")" : "";
    const span = document.createElement("span");
    span.id = "who-name";
    span.textContent = "Signed in as " + me.name + groups + (me.admin ? " · admin" : "");
    who.append(span);
    if (me.via === "oidc") {
      const out = document.createElement("a");
      out.href = "/auth/logout";
      out.textContent = " Sign out";
      who.append(out);
    }
  }

  async function loadPermissions(api) {
    const name = $("perm-collection").value.trim();
    if (!name) return;
    try {
      const p = await (await api("/api/collections/" + encodeURIComponent(name) + "/permissions")).json();
      $("perm-owner").value = p.owner || "";
      $("perm-writers").value = p.writers.join(", ");
      $("perm-readers").value = p.readers.join(", ");
      $("perm-status").textContent = "Loaded " + name + ".";
    } catch (err) {
      $("perm-status").textContent = err.message;
    }
  }

  async function savePermissions(api) {
    const name = $("perm-collection").value.trim();
    const body = {
      owner: $("perm-owner").value.trim() || null,
      writers: list($("perm-writers").value),
      readers: list($("perm-readers").value),
    };
    try {
      await api("/api/collections/" + encodeURIComponent(name) + "/permissions", {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      $("perm-status").textContent = "Saved who may use " + name + ".";
    } catch (err) {
      $("perm-status").textContent = err.message;
    }
  }

  async function loadKeys(api) {
    const ul = $("key-list");
    ul.textContent = "";
    const { keys } = await (await api("/api/admin/keys")).json();
    for (const k of keys) {
      const li = document.createElement("li");
      li.textContent = k.user + (k.groups.length ? " (" + k.groups.join(", ") + ")" : "") + (k.admin ? " · admin " : " ");
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "link";
      revoke.textContent = "revoke";
      revoke.addEventListener("click", async () => {
        await api("/api/admin/keys/" + encodeURIComponent(k.id), { method: "DELETE" });
        loadKeys(api);
      });
      li.append(revoke);
      ul.append(li);
    }
  }

  async function createKey(api) {
    const body = { user: $("key-user").value.trim(), groups: list($("key-groups").value), admin: $("key-admin").checked };
    try {
      const made = await (await api("/api/admin/keys", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      })).json();
      $("key-made").textContent = "Key for " + made.user + " (shown once): " + made.key;
      loadKeys(api);
    } catch (err) {
      $("key-made").textContent = err.message;
    }
  }

  // opts: {api: the page's fetch wrapper (app.js)}
  Cairn.initAccess = async function (opts) {
    let me = null;
    try {
      me = await (await opts.api("/api/me")).json();
    } catch (err) {
      if (err.status !== 401) return;
    }
    showWho(me);
    if (me === null) return;
    $("permissions").hidden = false;
    $("perm-load").addEventListener("click", () => loadPermissions(opts.api));
    $("perm-save").addEventListener("click", () => savePermissions(opts.api));
    if (me.operator) {
      $("keys").hidden = false;
      $("key-create").addEventListener("click", () => createKey(opts.api));
      loadKeys(opts.api).catch((err) => { $("key-made").textContent = err.message; });
    }
  };
})(window.Cairn);

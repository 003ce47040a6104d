// The documents list: a page at a time from GET /api/documents (newest first), narrowed by a title search (QS's
// `q`) and a collection picker (GET /api/collections), with Prev/Next. Text goes in with textContent only.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  const PAGE = 20;
  const SEARCH_PAUSE_MS = 250; // wait for a pause in typing: one request per word, not per key

  function node(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // opts: {api: (path, options) => Promise<Response> (throws on an error status, with the reason in its message)}
  Cairn.initLibrary = function (opts) {
    const list = document.getElementById("doc-list");
    const search = document.getElementById("doc-search");
    const picker = document.getElementById("doc-collection");
    const prev = document.getElementById("doc-prev");
    const next = document.getElementById("doc-next");
    const where = document.getElementById("doc-page");
    const view = { offset: 0, total: 0, asked: 0 }; // asked: the latest request, so a slower older answer is dropped
    let pause = null;

    function docItem(doc) {
      const li = node("li", "doc");
      li.dataset.id = doc.id;
      const name = node("span", "doc-title", doc.title || doc.id);
      name.title = doc.id + (doc.collection ? " · " + doc.collection : "");
      li.append(name, node("span", "hint", " " + doc.chunks + " chunks"));
      const del = node("button", "link delete", "delete");
      del.type = "button";
      del.title = "Delete " + (doc.title || doc.id);
      del.addEventListener("click", async () => {
        try {
          await opts.api("/api/documents/" + encodeURIComponent(doc.id), { method: "DELETE" });
        } catch (err) {
          document.getElementById("upload-status").textContent = err.message;
        }
        load();
      });
      li.append(del);
      return li;
    }

    async function loadCollections() {
      try {
        const data = await (await opts.api("/api/collections")).json();
        const chosen = picker.value;
        const options = [node("option", "", "All collections")];
        options[0].value = "";
        for (const c of data.collections || []) {
          const opt = node("option", "", c.name + " (" + c.documents + ")");
          opt.value = c.name;
          options.push(opt);
        }
        picker.replaceChildren(...options);
        picker.value = chosen; // a collection emptied meanwhile: the picker falls back to all
        if (picker.value !== chosen) {
          view.offset = 0;
          load();
        }
      } catch (_) {
        picker.title = "Collections unavailable"; // the list itself reports the error
      }
    }

    async function load() {
      const params = new URLSearchParams({ limit: String(PAGE), offset: String(view.offset) });
      if (search.value.trim()) params.set("q", search.value.trim());
      if (picker.value) params.set("collection", picker.value);
      const asked = ++view.asked;
      try {
        const data = await (await opts.api("/api/documents?" + params)).json();
        if (asked !== view.asked) return;
        const docs = data.documents || [];
        view.total = data.total || 0;
        if (!docs.length && view.offset > 0) { // the last one on this page was deleted: show the page before
          view.offset = Math.max(0, view.offset - PAGE);
          return load();
        }
        list.replaceChildren(...docs.map(docItem));
        if (!docs.length) {
          const filtered = params.has("q") || params.has("collection");
          list.append(node("li", "hint", filtered ? "No documents match." : "No documents yet: upload one to ask about it."));
        }
        where.textContent = docs.length
          ? view.offset + 1 + "–" + (view.offset + docs.length) + " of " + view.total
          : "";
      } catch (err) {
        if (asked !== view.asked) return;
        list.replaceChildren(node("li", "error", "Cannot list documents: " + err.message));
        where.textContent = "";
      }
      prev.disabled = view.offset === 0;
      next.disabled = view.offset + PAGE >= view.total;
    }

    search.addEventListener("input", () => {
      clearTimeout(pause);
      pause = setTimeout(() => {
        view.offset = 0;
        load();
      }, SEARCH_PAUSE_MS);
    });
    picker.addEventListener("change", () => {
      view.offset = 0;
      load();
    });
    prev.addEventListener("click", () => {
      view.offset = Math.max(0, view.offset - PAGE);
      load();
    });
    next.addEventListener("click", () => {
      view.offset += PAGE;
      load();
    });

    // Reloads the page of documents and the collections (their counts change with every upload and delete).
    Cairn.loadDocs = function () {
      loadCollections();
      return load();
    };
  };
})(window.Cairn);

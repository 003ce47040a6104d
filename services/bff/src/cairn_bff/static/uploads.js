// Uploads: pick or drop several files; each goes to POST /api/documents on its own, two at a time, with a
// progress bar and, when the server refuses it, the server's reason beside that file (too large, wrong type,
// unreadable). XMLHttpRequest, not fetch: only it reports upload progress.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  const PARALLEL = 2; // two at a time: a batch finishes sooner, without queueing every file at QS's parsers

  function node(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function fileRow(file) {
    const li = node("li", "upload");
    li.dataset.state = "waiting";
    const bar = node("progress");
    bar.max = 1;
    bar.value = 0;
    const msg = node("span", "upload-msg hint", "waiting");
    li.append(node("span", "upload-name", file.name), bar, msg);
    return { li, bar, msg };
  }

  // The error body is JSON with reason_code and message (docs/contract.md); anything else says its status.
  function refusal(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.reason_code) return body.reason_code + ": " + (body.message || "");
    } catch (_) { /* not JSON: a proxy's page */ }
    return "HTTP " + xhr.status + (xhr.statusText ? " " + xhr.statusText : "");
  }

  function send(file, row, headers) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/documents");
      for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
      row.li.dataset.state = "uploading";
      row.msg.textContent = "uploading";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable && e.total) row.bar.value = e.loaded / e.total;
      });
      xhr.upload.addEventListener("load", () => {
        row.bar.value = 1;
        row.msg.textContent = "reading";
      });
      const fail = (message) => {
        row.li.dataset.state = "error";
        row.msg.className = "upload-msg error";
        row.msg.textContent = message;
        resolve(false);
      };
      xhr.addEventListener("load", () => {
        if (xhr.status < 200 || xhr.status >= 300) return fail(refusal(xhr));
        let doc = {};
        try { doc = JSON.parse(xhr.responseText); } catch (_) { /* stored all the same */ }
        row.bar.value = 1;
        row.li.dataset.state = "done";
        row.msg.textContent = "added (" + (doc.chunks === undefined ? "?" : doc.chunks) + " chunks)";
        resolve(true);
      });
      xhr.addEventListener("error", () => fail("Network error: the upload did not reach the server."));
      xhr.addEventListener("abort", () => fail("Cancelled."));
      const form = new FormData();
      form.append("file", file);
      xhr.send(form);
    });
  }

  // opts: {headers: () => object of request headers (the API key), onUploaded: () => void (refresh the list)}
  Cairn.initUploads = function (opts) {
    const form = document.getElementById("upload-form");
    const input = document.getElementById("file-input");
    const zone = document.getElementById("drop-zone");
    const list = document.getElementById("upload-list");
    const status = document.getElementById("upload-status");

    let running = 0; // batches under way: a batch started meanwhile adds its files to the list, not replace it

    async function upload(files) {
      if (!files.length) {
        status.textContent = "Choose or drop one or more files first.";
        status.className = "status error";
        return;
      }
      const rows = files.map(fileRow);
      if (running) list.append(...rows.map((r) => r.li));
      else list.replaceChildren(...rows.map((r) => r.li));
      running += 1;
      status.textContent = "Uploading " + files.length + (files.length === 1 ? " file…" : " files…");
      status.className = "status";
      let next = 0;
      let added = 0;
      const worker = async () => {
        while (next < files.length) {
          const i = next++;
          if (await send(files[i], rows[i], opts.headers)) {
            added += 1;
            opts.onUploaded();
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL, files.length) }, worker));
      running -= 1;
      const refused = files.length - added;
      const noun = (n) => n + (n === 1 ? " file" : " files");
      status.textContent = refused
        ? "Added " + added + " of " + noun(files.length) + "; " + refused + " refused (see below)."
        : "Added " + noun(added) + ".";
      status.className = refused ? "status error" : "status";
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const files = Array.from(input.files);
      input.value = "";
      upload(files);
    });
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      upload(Array.from(event.dataTransfer.files));
    });
    // A file dropped beside the zone would otherwise replace the page (and the chat) with the file itself.
    for (const name of ["dragover", "drop"]) {
      window.addEventListener(name, (event) => {
        if (!zone.contains(event.target)) event.preventDefault();
      });
    }
  };
})(window.Cairn);

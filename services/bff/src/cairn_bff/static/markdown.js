// Light Markdown for answers: paragraphs, bullet and numbered lists, **bold**, `inline code`, and [chunk-id]
// citation markers. It builds DOM nodes and sets text with textContent only: the model's text never becomes HTML,
// so a <script> or an <img onerror> in an answer shows as the characters it is. One pass over the text, so the
// page can re-render the whole answer on every streamed delta.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  const BULLET = /^\s*[-*•]\s+(.*)$/;
  const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
  const INDENTED = /^\s+\S/;
  // `code` first: inside it, ** and [x] are literal. A marker is a chunk id in brackets, as the gateway writes it.
  const INLINE = /`([^`\n]+)`|\*\*([^*\n]+)\*\*|\[([A-Za-z0-9._:-]+)\]/g;

  // Appends `text` to `parent` as text, <code>, <strong> and whatever onMarker(id) returns for a [marker]
  // (a node, or null to leave the marker as text: a citation not known yet while the answer streams).
  function appendInline(parent, text, onMarker) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) { // matchAll works on a copy of the regex: safe to recurse
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) {
        const code = document.createElement("code");
        code.textContent = m[1];
        parent.append(code);
      } else if (m[2] !== undefined) {
        const strong = document.createElement("strong");
        appendInline(strong, m[2], onMarker);
        parent.append(strong);
      } else {
        const node = onMarker ? onMarker(m[3]) : null;
        parent.append(node || document.createTextNode(m[0]));
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  // Replaces the children of `container` with the rendered `text`.
  Cairn.renderMarkdown = function (container, text, onMarker) {
    const blocks = [];
    let block = null; // the open block: {kind: "p" | "ul" | "ol", node, item}
    const open = (kind, start) => {
      const node = document.createElement(kind);
      if (kind === "ol" && start !== 1) node.start = start;
      block = { kind, node, item: null };
      blocks.push(node);
    };
    const addItem = (content) => {
      block.item = document.createElement("li");
      appendInline(block.item, content, onMarker);
      block.node.append(block.item);
    };
    for (const line of String(text || "").split("\n")) {
      let m;
      if (!line.trim()) {
        block = null; // a blank line ends a paragraph or a list
      } else if ((m = BULLET.exec(line))) {
        if (!block || block.kind !== "ul") open("ul");
        addItem(m[1]);
      } else if ((m = NUMBERED.exec(line))) {
        if (!block || block.kind !== "ol") open("ol", Number(m[1]));
        addItem(m[2]);
      } else if (block && block.kind !== "p" && block.item && INDENTED.test(line)) {
        block.item.append(document.createTextNode("\n")); // an indented line continues the list item
        appendInline(block.item, line.trim(), onMarker);
      } else if (block && block.kind === "p") {
        block.node.append(document.createTextNode("\n"));
        appendInline(block.node, line, onMarker);
      } else {
        open("p");
        appendInline(block.node, line, onMarker);
      }
    }
    container.replaceChildren(...blocks);
  };
})(window.Cairn);

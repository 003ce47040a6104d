// The chunk dialog: a cited chunk's text with the sentences that the answer used marked (<mark>), so the reader
// sees at once where the answer comes from. Text only ever goes in with textContent.
"use strict";

window.Cairn = window.Cairn || {};

(function (Cairn) {
  // Where a sentence ends: as cairn_core's split_sentences cuts (. ! ? then space and a capital or a digit),
  // and at a blank line or before a list item.
  const BOUNDARY = /[.!?]["')\]]*\s+(?=["'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)/g;
  const MARKER = /\s*\[[^\s\[\]]{1,200}\]/g;
  const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu;

  // [start, end) of each sentence of `text`, in order, empty ones left out.
  function sentenceSpans(text) {
    const spans = [];
    let start = 0;
    for (const m of text.matchAll(BOUNDARY)) {
      const end = m.index + m[0].trimEnd().length; // the full stop belongs to its sentence
      if (/^\s*\d+[.)]$/.test(text.slice(start, end))) continue; // "1." opens a list item, it is no sentence
      if (text.slice(start, end).trim()) spans.push([start, end]);
      start = m.index + m[0].length;
    }
    if (text.slice(start).trim()) spans.push([start, text.length]);
    return spans;
  }

  // Case, spacing, Markdown marks, list bullets and citation markers do not change what a sentence says.
  function normal(sentence) {
    return sentence
      .replace(MARKER, " ")
      .replace(/^\s*(?:[-*•]|\d+[.)])\s+/, "")
      .replace(/\*\*|`/g, "")
      .replace(/\s+([.,;:!?])/g, "$1")
      .replace(/\s+/g, " ")
      .trim()
      .toLowerCase();
  }

  function words(sentence) {
    return new Set((sentence.match(WORD) || []).filter((w) => w.length > 2));
  }

  function share(a, b) {
    if (!a.size) return 0;
    let n = 0;
    for (const w of a) if (b.has(w)) n += 1;
    return n / a.size;
  }

  // A chunk sentence was used when the answer holds it word for word (give or take case and spacing), or when
  // it and one answer sentence share most of their words (a model that quotes loosely, or cut a sentence short).
  function usedSentences(chunkText, answerText) {
    const answerSentences = sentenceSpans(answerText).map(([s, e]) => normal(answerText.slice(s, e)));
    const whole = " " + answerSentences.join(" ") + " ";
    const answerWords = answerSentences.map(words);
    return sentenceSpans(chunkText).filter(([s, e]) => {
      const sentence = normal(chunkText.slice(s, e));
      if (sentence.length >= 12 && whole.includes(sentence)) return true;
      const own = words(sentence);
      return own.size >= 3 && answerWords.some((aw) => share(own, aw) >= 0.6 && share(aw, own) >= 0.6);
    });
  }

  // Fills `target` with `chunkText`, the sentences the answer used inside <mark>; returns how many were marked.
  Cairn.showChunkText = function (target, chunkText, answerText) {
    const text = String(chunkText || "");
    const used = answerText ? usedSentences(text, String(answerText)) : [];
    const nodes = [];
    let last = 0;
    for (const [s, e] of used) {
      if (s > last) nodes.push(document.createTextNode(text.slice(last, s)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(s, e);
      nodes.push(mark);
      last = e;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    target.replaceChildren(...nodes);
    if (used.length) target.querySelector("mark").scrollIntoView({ block: "nearest" });
    return used.length;
  };
})(window.Cairn);

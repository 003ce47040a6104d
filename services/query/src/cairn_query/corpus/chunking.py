"""Split a document into overlapping chunks on paragraph and sentence boundaries, one section at a time.

Chunks are built from whole sentences (`cairn_core.split_sentences`, the splitter that evidence and quotes
use, so a chunk never starts or ends inside what they call a sentence) up to `size` characters; the next
chunk starts with the last sentences of the previous one (up to `overlap` characters), so a fact that
straddles a boundary is whole in one chunk. Paragraphs stay apart (a blank line), so a heading or a grammar
line is never glued to the sentence after it. A chunk never crosses a section: its section path is a
property of the whole chunk, and so is its page. A table row (a line marked `\v`, see `normalise.py`) is
one unit, never split between chunks: a row longer than `size` alone is cut between its cells. A code or
grammar block longer than `size` is cut between its lines, and a single sentence longer than `size` after a
clause (`;`, then `,`), or on whitespace when it has none.
Deterministic: the same text always gives the same chunks, which keeps chunk ids stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from cairn_core import split_sentences

from cairn_query.corpus.normalise import ROW_MARK, Section

_PARAGRAPH = re.compile(r"\n\s*\n")
_PARAGRAPH_END = "\n\n"


def _blocks(para: str, size: int) -> list[str]:
    """A paragraph, or the line groups of a long code block (every line indented, as Sphinx and the
    normalised form write code and grammars), each at most `size` characters where its lines allow."""
    lines = para.split("\n")
    if len(para) <= size or not all(line.startswith((" ", "\t")) for line in lines[1:] if line.strip()):
        return [para]
    out: list[str] = []
    group: list[str] = []
    for line in lines:
        if group and sum(len(g) + 1 for g in group) + len(line) > size:
            out.append("\n".join(group))
            group = []
        group.append(line)
    return [*out, "\n".join(group)]


def _cut(sentence: str, size: int) -> int:
    """Where to cut a sentence longer than `size`: after the last clause ("; ", then ", ") in its second half,
    so each piece reads as a whole clause, else at a space, else at `size`."""
    for mark in ("; ", ", ", " "):
        cut = sentence.rfind(mark, 0, size - 1)
        if cut > size // 2:
            return cut + len(mark) - 1
    return size


class Piece(NamedTuple):
    """One chunk of a document: its section path, its text, its page or slide (or None)."""

    section: str | None
    text: str
    page: int | None = None


def _rows(para: str, size: int) -> list[str]:
    """A paragraph of table rows (each line marked), one unit per row, each ending its paragraph."""
    out: list[str] = []
    for line in para.split("\n"):
        row = line.lstrip(ROW_MARK).strip()
        while len(row) > size:
            cut = _cut(row, size)
            out.append(row[:cut].strip() + _PARAGRAPH_END)
            row = row[cut:].strip()
        if row:
            out.append(row + _PARAGRAPH_END)
    return out


def _sentences(text: str, size: int) -> list[str]:
    out: list[str] = []
    for para in _PARAGRAPH.split(text):
        if para.startswith(ROW_MARK):
            out += _rows(para, size)
            continue
        for block in _blocks(para, size):
            for sentence in split_sentences(block):
                while len(sentence) > size:
                    cut = _cut(sentence, size)
                    out.append(sentence[:cut].strip())
                    sentence = sentence[cut:].strip()
                if sentence:
                    out.append(sentence)
            # Mark the block's end so that it stays a paragraph of its own in the chunk.
            if out and not out[-1].endswith(_PARAGRAPH_END):
                out[-1] += _PARAGRAPH_END
    return out


def chunk_text(text: str, size: int = 800, overlap: int = 150) -> list[str]:
    sentences = _sentences(text, size)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for sentence in sentences:
        if current and length + len(sentence) + 1 > size:
            chunks.append(_join(current))
            # Carry whole trailing sentences (up to `overlap` chars) into the next chunk.
            carry: list[str] = []
            carried = 0
            for prev in reversed(current):
                if carried + len(prev) > overlap:
                    break
                carry.insert(0, prev)
                carried += len(prev) + 1
            # The overlap gives way to a long sentence, so that no chunk passes `size`.
            while carry and carried + len(sentence) + 1 > size:
                carried -= len(carry.pop(0)) + 1
            current, length = carry, carried
        current.append(sentence)
        length += len(sentence) + 1
    if current:
        last = _join(current)
        # A tail that is only overlap adds nothing new.
        if not chunks or not chunks[-1].endswith(last):
            chunks.append(last)
    return chunks


def chunk_sections(sections: Iterable[Section], size: int = 800, overlap: int = 150) -> list[Piece]:
    """(section path, chunk text, page) for every chunk of every section, in document order."""
    return [Piece(s.name, chunk, s.page) for s in sections for chunk in chunk_text(s.text, size, overlap)]


def _join(sentences: list[str]) -> str:
    text = ""
    for s in sentences:
        if text and not text.endswith(_PARAGRAPH_END):
            text += " "
        text += s
    return text.strip()

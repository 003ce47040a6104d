"""Split a document into overlapping chunks on paragraph and sentence boundaries.

Chunks are built from whole sentences up to `size` characters; the next chunk starts with the last sentences
of the previous one (up to `overlap` characters), so a fact that straddles a boundary is whole in one chunk.
A paragraph break always ends a sentence, and a single sentence longer than `size` is cut on whitespace.
Deterministic: the same text always gives the same chunks, which keeps chunk ids stable.
"""

from __future__ import annotations

import re

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def _sentences(text: str, size: int) -> list[str]:
    out: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = _SPACE.sub(" ", para).strip()
        if not para:
            continue
        for sentence in _SENTENCE_END.split(para):
            sentence = sentence.strip()
            while len(sentence) > size:
                cut = sentence.rfind(" ", 0, size)
                cut = cut if cut > size // 2 else size
                out.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                out.append(sentence)
        # Mark the paragraph end so chunks prefer to break here.
        if out:
            out[-1] = out[-1] + "\n"
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
            current, length = carry, carried
        current.append(sentence)
        length += len(sentence) + 1
    if current:
        last = _join(current)
        # A tail that is only overlap adds nothing new.
        if not chunks or not chunks[-1].endswith(last):
            chunks.append(last)
    return chunks


def _join(sentences: list[str]) -> str:
    text = ""
    for s in sentences:
        if text and not text.endswith("\n"):
            text += " "
        text += s
    return text.strip()

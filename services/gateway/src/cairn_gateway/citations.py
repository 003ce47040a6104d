"""A grounded answer's output: the JSON schema the gateway asks for, a tolerant parser, and validation.

The model is asked for `{"answer": str, "citations": [{"chunk_id": one of the given ids}]}`. Layers, strongest
first: constrained decoding with `json_schema()` where the provider supports it; `parse_grounded()` that forgives
text around the JSON, code fences, trailing commas and raw line breaks inside strings; `validate_citations()`
against the ids actually given.
`AnswerExtractor` pulls the answer text out of a JSON stream as it is generated, so it can stream to the user
before the citations are known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cairn_core import CairnError, Citation, ContextChunk, ReasonCode


def json_schema(chunk_ids: Sequence[str], max_citations: int = 5) -> dict[str, Any]:
    """JSON schema whose `chunk_id` can only be one of the retrieved ids."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "minLength": 1},
            "citations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"chunk_id": {"type": "string", "enum": list(chunk_ids)}},
                    "required": ["chunk_id"],
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": max_citations,
            },
        },
        "required": ["answer", "citations"],
        "additionalProperties": False,
    }


class CitationError(CairnError):
    """The model's output is not a usable grounded answer (MALFORMED_OUTPUT, INVALID_CITATION,
    MISSING_CITATIONS): a reason to answer with a fallback, never to show the output."""


@dataclass(frozen=True, slots=True)
class GroundedAnswer:
    answer: str
    citations: list[Citation]


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _candidates(text: str) -> list[str]:
    out = [m.group(1) for m in _FENCE.finditer(text)]
    start = text.find("{")
    if start != -1:
        end = text.rfind("}")
        # An unterminated object (the stream was cut) still gets a chance with its closing braces added.
        out.append(text[start : end + 1] if end > start else text[start:] + '"}')
    return out


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def scrub_surrogates(text: str) -> str:
    """Replace lone surrogates with U+FFFD. Python's JSON decoder turns an escaped surrogate that has no partner
    (`"\\ud800"`) into a lone one, which no UTF-8 encoder accepts: left in, it aborts the response."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def parse_grounded(text: str) -> dict[str, Any]:
    """Find the JSON object in model output; raises CitationError(MALFORMED_OUTPUT) when there is none."""
    for cand in _candidates(text):
        for attempt in (cand, _TRAILING_COMMA.sub(r"\1", cand)):
            try:
                # strict=False: a raw line break or tab inside a string is kept, not refused. Grammars let models
                # write them (llama-cpp-python 0.3.36's schema grammar allows any character but `"` and `\`).
                data = json.loads(attempt, strict=False)
            except (json.JSONDecodeError, RecursionError):  # nesting deeper than the interpreter's stack
                continue
            if isinstance(data, dict):
                return data
    raise CitationError(ReasonCode.MALFORMED_OUTPUT, "The model's output is not the requested JSON object.")


def validate_citations(data: dict[str, Any], chunks: Sequence[ContextChunk]) -> GroundedAnswer:
    """Check a parsed object against the chunks that were given; enrich citations with title and url."""
    answer = data.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise CitationError(ReasonCode.MALFORMED_OUTPUT, "The model's output has no 'answer' text.")
    raw = data.get("citations")
    if raw is None or raw == []:
        raise CitationError(ReasonCode.MISSING_CITATIONS, "The model's answer cites no source.")
    if not isinstance(raw, list):
        raise CitationError(ReasonCode.MALFORMED_OUTPUT, "'citations' is not a list.")
    by_id = {c.chunk_id: c for c in chunks}
    seen: dict[str, Citation] = {}
    for item in raw:
        cid = item.get("chunk_id") if isinstance(item, dict) else item if isinstance(item, str) else None
        if not isinstance(cid, str):
            raise CitationError(ReasonCode.MALFORMED_OUTPUT, "A citation has no 'chunk_id'.")
        chunk = by_id.get(cid.strip())
        if chunk is None:
            raise CitationError(
                ReasonCode.INVALID_CITATION, f"The model cited {cid!r}, which is not among the given sources."
            )
        seen.setdefault(chunk.chunk_id, Citation(chunk_id=chunk.chunk_id, title=chunk.title, url=chunk.url))
    return GroundedAnswer(answer=scrub_surrogates(answer.strip()), citations=list(seen.values()))


def check_grounded(text: str, chunks: Sequence[ContextChunk]) -> GroundedAnswer:
    return validate_citations(parse_grounded(text), chunks)


class AnswerExtractor:
    """Incrementally extracts the value of the top-level "answer" string from streamed JSON text.

    `feed(piece)` returns the newly decoded answer text (possibly ""). Escapes split across pieces are held
    back until complete. Once the closing quote is seen, further input is only buffered.
    """

    _KEY = re.compile(r'"answer"\s*:\s*"')
    _ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def __init__(self) -> None:
        self.buffer = ""
        self._pos = -1  # index in buffer where the answer's characters start; -1 until the key is seen
        self.done = False

    def feed(self, piece: str) -> str:
        self.buffer += piece
        if self.done:
            return ""
        if self._pos < 0:
            m = self._KEY.search(self.buffer)
            if not m:
                return ""
            self._pos = m.end()
        out: list[str] = []
        i, buf = self._pos, self.buffer
        while i < len(buf):
            ch = buf[i]
            if ch == '"':
                self.done = True
                i += 1
                break
            if ch == "\\":
                if i + 1 >= len(buf):
                    break
                esc = buf[i + 1]
                if esc == "u":
                    taken = _unicode_escape(buf, i)
                    if taken is None:  # not all of it has arrived yet
                        break
                    char, i = taken
                    out.append(char)
                    continue
                out.append(self._ESCAPES.get(esc, esc))
                i += 2
                continue
            out.append(ch)
            i += 1
        self._pos = i
        return "".join(out)


_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _unicode_escape(buf: str, i: int) -> tuple[str, int] | None:
    """Decode the `\\uXXXX` escape at `buf[i]`, joining a surrogate pair (`\\ud83d\\ude00` is one emoji);
    returns (text, index after it), or None while the escape, or its pair's second half, is incomplete."""
    if i + 6 > len(buf):
        return None
    head = buf[i + 2 : i + 6]
    if not _HEX4.fullmatch(head):
        return buf[i : i + 6], i + 6
    code = int(head, 16)
    if 0xD800 <= code < 0xDC00:  # a high surrogate: the low half must follow as its own escape
        if i + 12 > len(buf):
            if len(buf) <= i + 6 or buf[i + 6] == "\\":
                return None
        else:
            tail = buf[i + 8 : i + 12]
            if buf.startswith("\\u", i + 6) and _HEX4.fullmatch(tail) and 0xDC00 <= int(tail, 16) < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (int(tail, 16) - 0xDC00)), i + 12
        return "\ufffd", i + 6
    if 0xDC00 <= code < 0xE000:  # a low half with no high half before it
        return "\ufffd", i + 6
    return chr(code), i + 6

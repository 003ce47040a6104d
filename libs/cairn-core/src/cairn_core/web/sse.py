"""SSE framing: the one encoder and the one decoder every service, test and script uses.

Encoding is a single `bytes` per event so a proxy can forward frames untouched. Decoding follows the HTML
standard's event-stream parser: lines end in CRLF, LF or CR (a CRLF split across two chunks is one line end),
a leading byte-order mark is dropped, `:` lines are comments, one space after the colon is removed, data lines
join with LF, and a block is dispatched on its blank line only if it had data (an event the stream never
ended with a blank line is dropped). `SSEDecoder` is the parser, fed bytes as they arrive; `aiter_sse` and
`aiter_sse_chunks` wrap it for an httpx response and for raw byte chunks (the gateway's aiohttp hop), `iter_sse`
for blocking clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from .json import dumps, loads

_BOM = b"\xef\xbb\xbf"


def encode_event(event: str | None, data: BaseModel | dict[str, Any] | str) -> bytes:
    if isinstance(data, BaseModel):
        payload = data.model_dump_json()
    elif isinstance(data, str):
        payload = data
    else:
        payload = dumps(data).decode()
    head = f"event: {event}\n" if event else ""
    # A payload with newlines must be split across data lines, or the frame breaks.
    body = "".join(f"data: {line}\n" for line in payload.split("\n"))
    return f"{head}{body}\n".encode()


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str
    data: str
    # With `SSEDecoder(keep_raw=True)`: the event's block as it came, each line ended by LF, then the blank line.
    # For a stream that ends its lines with LF (every Cairn service), these are the bytes received: a relay
    # forwards them untouched.
    raw: bytes = b""

    def json(self) -> Any:
        return loads(self.data)


class SSEDecoder:
    """Incremental: `feed` it bytes as they arrive, and it returns the events they completed."""

    __slots__ = ("_after_cr", "_buffer", "_data", "_event", "_first_line", "_keep_raw", "_raw")

    def __init__(self, *, keep_raw: bool = False) -> None:
        self._buffer = b""  # the line not ended yet
        self._after_cr = False  # the last chunk ended in CR: an LF starting the next one ends no line
        self._first_line = True
        self._event = ""
        self._data: list[str] = []
        self._raw: list[bytes] = []
        self._keep_raw = keep_raw

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        if not chunk:
            return []
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: bytes) -> SSEMessage | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if self._keep_raw:
            self._raw.append(line)
        if line.startswith(b":"):
            return None
        # Lines are whole here, so no UTF-8 sequence is split (line ends are ASCII bytes).
        name, _, value = line.decode("utf-8", errors="replace").partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # `id`, `retry` and unknown fields: nothing in Cairn uses them, and the standard ignores unknown ones.
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, raw = self._data, self._event, self._raw
        self._data, self._event, self._raw = [], "", []
        if not data:
            return None
        frame = b"\n".join(raw) + b"\n\n" if self._keep_raw else b""
        return SSEMessage(event or "message", "\n".join(data), frame)


def decode_sse(body: bytes | str) -> list[SSEMessage]:
    """Every event of a whole SSE body."""
    return SSEDecoder().feed(body.encode() if isinstance(body, str) else body)


def iter_sse(chunks: Iterable[bytes]) -> Iterator[SSEMessage]:
    """The same for a blocking client (`httpx.Client.stream(...).iter_bytes()`): scripts and tests."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)


async def aiter_sse_chunks(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEMessage]:
    """Yield SSE messages from raw byte chunks as they arrive (a UTF-8 character may be split across them)."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event


async def aiter_sse(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    """Yield SSE messages from a streaming httpx response as they arrive."""
    async for event in aiter_sse_chunks(response.aiter_bytes()):
        yield event

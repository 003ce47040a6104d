"""SSE framing: the one encoder and the one decoder every service uses.

Encoding is a single `bytes` per event so a proxy can forward frames untouched. Decoding is `httpx-sse`'s, which
handles multi-line data, comments and CR/LF/CRLF: `aiter_sse` for an httpx response, `aiter_sse_chunks` for raw
byte chunks (the gateway's aiohttp hop to the model server), fed through the same two decoders httpx-sse uses.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource

# Not re-exported by httpx-sse: the version is pinned in uv.lock, and libs/cairn-core/tests/test_sse_and_errors.py
# covers what is used here.
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from pydantic import BaseModel

from ._json import dumps, loads


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

    def json(self) -> Any:
        return loads(self.data)


async def aiter_sse(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    """Yield SSE messages from a streaming httpx response as they arrive."""
    async for sse in EventSource(response).aiter_sse():
        yield SSEMessage(event=sse.event or "message", data=sse.data)


async def aiter_sse_chunks(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEMessage]:
    """Yield SSE messages from raw byte chunks as they arrive (UTF-8 split across chunks is handled)."""
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = SSELineDecoder()
    events = SSEDecoder()
    async for chunk in chunks:
        for line in lines.decode(text.decode(chunk)):
            sse = events.decode(line)
            if sse is not None:
                yield SSEMessage(event=sse.event or "message", data=sse.data)
    # As the spec says (and httpx-sse does), an event the stream never terminated with a blank line is dropped.
    tail = text.decode(b"", final=True)
    for line in [*(lines.decode(tail) if tail else []), *lines.flush()]:
        sse = events.decode(line)
        if sse is not None:
            yield SSEMessage(event=sse.event or "message", data=sse.data)

"""SSE framing: the one encoder and the one decoder every service uses.

Encoding is a single `bytes` per event so a proxy can forward frames untouched. Decoding wraps `httpx-sse`,
which handles multi-line data, comments and CRLF.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource
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

"""uvicorn's HTTP protocol with the two guards it lacks against slow or greedy clients.

uvicorn times out idle keep-alive connections, but not a request whose headers never finish: 20 half-sent
requests were all still held open after 12 s (issue 10). Each costs a socket and a file descriptor, and
enough of them starve everyone else. This subclass of its httptools protocol:

- closes a connection whose request headers are not complete `header_timeout_s` after its first byte (or
  after the connection opened), with a 408 and a reason code;
- refuses connections beyond `max_connections` at once with a 503 and a reason code, instead of accepting
  them all (uvicorn's own `limit_concurrency` answers in plain text).

Slow bodies are the ASGI side's business: `BodyLimitMiddleware` gives the whole body a deadline.

Why a subclass (issue 24 asked for a supported mechanism): uvicorn 0.54 has none for either guard. Its settings
stop at `timeout_keep_alive` (idle connections between requests) and `limit_concurrency` (a plain-text 503), and
a header deadline cannot be an ASGI middleware, since the app is only called once the headers are complete.
The one supported door is the one used here: `uvicorn.run(http=...)` takes a protocol class. What is not public
is what the subclass hooks into (the parser callbacks `on_message_begin` / `on_headers_complete`, and
`connections`), so tests/test_security.py `test_half_sent_requests_are_closed_and_connections_are_capped` runs
both guards against a real server: an upgrade that moves them fails there, not in production. The other
supported answer is outside the process: a proxy in front (nginx's `client_header_timeout`, `limit_conn`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..contract.errors import error_body
from ..contract.reason_codes import ReasonCode
from .json import dumps

_REASONS = {408: b"Request Timeout", 503: b"Service Unavailable"}


def _raw_error(status: int, code: ReasonCode, message: str) -> bytes:
    body = dumps(error_body(code, message, None))
    head = (
        f"HTTP/1.1 {status} ".encode()
        + _REASONS[status]
        + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
    )
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Configured per server by `guarded_protocol`, which sets the two class attributes."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = f"The server is at its limit of {self.max_connections} connections; retry shortly."
            transport.write(_raw_error(503, ReasonCode.QUEUE_FULL, message))
            transport.close()
            return
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # the next request on a kept-alive connection gets its own deadline

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        message = f"The request headers did not arrive within {self.header_timeout_s:g} s."
        self.transport.write(_raw_error(408, ReasonCode.BAD_REQUEST, message))
        self.transport.close()


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedHttpToolsProtocol]:
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )

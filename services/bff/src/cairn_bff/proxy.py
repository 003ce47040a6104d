"""The BFF's hops to QS and the gateway: plain requests forwarded as they are, and a byte-for-byte SSE relay.

The relay never parses, re-splits or re-encodes what QS sends: each chunk `aiter_raw()` yields is written to the
browser as it arrives. It only keeps the last few KB to notice a stream that broke off without its terminal
`done` frame, and then appends `error` + `done` itself, so the browser always sees a stream end on purpose.
When the browser goes away, Starlette cancels the relay and closing the upstream response cancels QS (and
through it the gateway).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import structlog
from cairn_core import (
    CairnError,
    DoneEvent,
    ErrorEvent,
    EventStreamResponse,
    ReasonCode,
    Replicas,
    Status,
    cancel_on_disconnect,
    client_span,
    current_request_id,
    encode_event,
    outgoing_headers,
)
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from starlette.requests import Request
from starlette.responses import Response

from .identity import upstream_headers
from .metrics import BffMetrics

log = structlog.get_logger("proxy")

# Upstream headers worth passing on; hop-by-hop and framing headers are the server's own business.
_PASS = ("content-type", "x-cache", "retry-after")
_TAIL_BYTES = 4096


def passthrough_headers(upstream: httpx.Headers) -> dict[str, str]:
    return {k: upstream[k] for k in _PASS if k in upstream}


def stream_ended(tail: bytes) -> bool:
    """True when the last frame seen is a complete `done` frame (a line that starts `event: done`)."""
    return tail.endswith(b"\n\n") and b"\nevent: done\n" in b"\n" + tail


def terminal_frames(tail: bytes, message: str) -> bytes:
    # Close a frame that was cut in half first, so the error frame is not glued onto it.
    prefix = b"" if not tail or tail.endswith(b"\n\n") else b"\n\n"
    code = ReasonCode.STREAM_INTERRUPTED
    rid = current_request_id()
    return (
        prefix
        + encode_event("error", ErrorEvent(reason_code=code, message=message, request_id=rid))
        + encode_event("done", DoneEvent(status=Status.ERROR, reason_code=code))
    )


_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)


def _caller(request: Request) -> dict[str, str]:
    """Who asks, on every request forwarded upstream, here and nowhere else, so that no route can forget
    it: QS filters what it reads by it (identity.py)."""
    return upstream_headers(getattr(request.state, "identity", None))


class Upstream:
    """One upstream service (QS or the gateway), one httpx client per replica, made in the lifespan.

    With several replicas (`BFF_QS_URLS`) each request starts at the next in turn, and one that cannot be
    connected to is skipped for the next: no connection means nothing was sent, so trying another replica
    can neither duplicate an upload nor a token. Any other failure is the answer (it may have been processed).
    """

    def __init__(
        self, label: str, clients: list[httpx.AsyncClient], tracer: Tracer, metrics: BffMetrics
    ) -> None:
        self.label = label
        self.replicas = Replicas(clients)
        self.tracer = tracer
        self.metrics = metrics

    def _failure(self, exc: httpx.HTTPError, client: httpx.AsyncClient) -> CairnError:
        # Not being able to connect is "unavailable" whatever the transport calls it (httpx-aiohttp reports a
        # refused connection as ConnectTimeout); only a slow answer from a live upstream is a timeout.
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return CairnError(ReasonCode.PROVIDER_TIMEOUT, f"The {self.label} did not answer in time.")
        where = "every replica of the" if len(self.replicas.items) > 1 else "the"
        return CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE,
            f"{where.capitalize()} {self.label} at {client.base_url} is unreachable: {type(exc).__name__}.",
        )

    async def _first_reachable(
        self, send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """`send` on the next replica in turn, on the one after it when no connection could be made."""
        order = self.replicas.order()
        for i, client in enumerate(order):
            try:
                resp = await send(client)
            except _UNREACHABLE as exc:
                self.replicas.unreachable(client)
                if i == len(order) - 1:
                    raise self._failure(exc, client) from None
                log.warning("replica_unreachable", upstream=self.label, url=str(client.base_url))
                continue
            except httpx.HTTPError as exc:
                raise self._failure(exc, client) from None
            self.replicas.reachable(client)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def forward(
        self,
        request: Request,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Any = None,
        content_type: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one request and return the upstream's answer as it is (status, body, content type)."""
        with client_span(self.tracer, f"{self.label} {method}", **{"url.path": path}):
            extra = {
                **({"content-type": content_type} if content_type else {}),
                **(extra_headers or {}),
                **_caller(request),
            }
            headers = outgoing_headers(extra)

            async def send(client: httpx.AsyncClient) -> httpx.Response:
                call = client.request(method, path, content=content, params=params, headers=headers)
                return await cancel_on_disconnect(request, call)

            resp = await self._first_reachable(send)
        return Response(resp.content, status_code=resp.status_code, headers=passthrough_headers(resp.headers))

    async def post_json(self, path: str, body: dict[str, Any], timeout_s: float) -> httpx.Response:
        """A small JSON call of the BFF's own (a key lookup, a login record), not a client's request."""

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(path, json=body, timeout=timeout_s, headers=outgoing_headers())

        return await self._first_reachable(send)

    async def get_text(self, path: str, timeout_s: float) -> str:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.get(path, timeout=timeout_s, headers=outgoing_headers())

        resp = await self._first_reachable(send)
        resp.raise_for_status()
        return resp.text

    async def open_stream(
        self, request: Request, path: str, content: bytes, extra_headers: dict[str, str] | None = None
    ) -> Response:
        """POST and relay an SSE answer byte for byte; a non-SSE answer (an error) is returned as it is."""
        span = self.tracer.start_span(f"{self.label} POST stream", kind=SpanKind.CLIENT)
        span.set_attribute("url.path", path)
        with trace.use_span(span, end_on_exit=False):
            headers = outgoing_headers(
                {
                    "content-type": "application/json",
                    "accept": "text/event-stream",
                    **(extra_headers or {}),
                    **_caller(request),
                }
            )

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            upstream_request = client.build_request("POST", path, content=content, headers=headers)
            return await cancel_on_disconnect(request, client.send(upstream_request, stream=True))

        try:
            resp = await self._first_reachable(send)
        except BaseException:
            span.end()
            raise
        ctype = resp.headers.get("content-type", "")
        if resp.status_code != 200 or not ctype.startswith("text/event-stream"):
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
                span.end()
            return Response(body, status_code=resp.status_code, headers=passthrough_headers(resp.headers))
        extra = {k: v for k, v in passthrough_headers(resp.headers).items() if k != "content-type"}
        return EventStreamResponse(self._relay(resp, span), headers=extra)

    async def _relay(self, resp: httpx.Response, span: Span) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        self.metrics.streams.inc()
        outcome = "client_gone"  # what is left if the browser leaves and Starlette cancels us mid-yield
        tail = b""
        try:
            try:
                async for chunk in resp.aiter_raw():
                    tail = (tail + chunk)[-_TAIL_BYTES:]
                    yield chunk
                outcome = "complete" if stream_ended(tail) else "upstream_broken"
            except httpx.HTTPError as exc:
                log.warning("upstream_stream_failed", upstream=self.label, error=type(exc).__name__)
                outcome = "upstream_broken"
            if outcome == "upstream_broken":
                yield terminal_frames(tail, f"The {self.label} stream broke off before it was complete.")
        finally:
            # Starlette cancels this generator when the browser leaves; shield the close so the upstream
            # connection really is closed (that is what cancels the generation upstream).
            with anyio.CancelScope(shield=True):
                await resp.aclose()
            self.metrics.streams.dec()
            self.metrics.stream_outcomes.labels(outcome).inc()
            span.set_attribute("cairn.stream_outcome", outcome)
            span.end()
            log.info(
                "stream_relayed",
                upstream=self.label,
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

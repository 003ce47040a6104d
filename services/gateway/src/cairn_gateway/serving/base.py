"""What every generation API shares: `serve()` runs one request through the engine and writes its answer with
the API's `Renderer`, and `record()` writes how it ended, metrics and access-log fields, in one place.

A request is served as JSON or as a stream (`stream: true`). The engine walks the model's fallback chain up
to a complete answer, or up to the first chunk of a stream: until then a failure is the API's own error
answer (`Renderer.failed`), after it only a frame of the stream. Whatever the API, an answer from the
fallback chain is recorded as `fallback`, a stream whose client went away as `CANCELLED`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from cairn_core import (
    CairnError,
    EventStreamResponse,
    GenerateRequest,
    ReasonCode,
    Status,
    Usage,
    cancel_on_disconnect,
    log_fields,
)
from starlette.requests import Request
from starlette.responses import Response

from ..engine import Completed, Engine, StreamHandle
from ..metrics import GatewayMetrics
from ..providers.base import ProviderRequest


@dataclass
class Outcome:
    """How one request to a generation API ended: what its metrics and access-log line say."""

    endpoint: str
    started: float
    status: Status = Status.OK
    reason: ReasonCode | None = None
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    ttft_s: float | None = None  # streams only
    # The provider's own time, for tokens/s; a stream's is the time after its first token.
    generation_s: float | None = None

    def served_by(self, by: Completed | StreamHandle) -> None:
        """An answer is `ok`, or `fallback` (with the first failure's reason) when the chain served it."""
        if by.fallback_reason:
            self.status, self.reason = Status.FALLBACK, by.fallback_reason.reason_code
        self.provider, self.model = by.provider_name, by.model
        if isinstance(by, StreamHandle):
            self.ttft_s, self.usage = by.ttft_s, Usage()
        else:
            self.usage, self.generation_s = by.result.usage, by.provider_s

    def fail(self, reason: ReasonCode, status: Status = Status.ERROR) -> None:
        self.status, self.reason = status, reason


def record(metrics: GatewayMetrics, o: Outcome, fields: dict[str, Any]) -> None:
    """The metrics and access-log fields of one finished request."""
    latency = time.perf_counter() - o.started
    metrics.requests.labels(
        o.endpoint, o.status.value, o.reason.value if o.reason else "", o.provider or ""
    ).inc()
    metrics.latency.labels(o.endpoint).observe(latency)
    if o.ttft_s is not None and o.provider:
        metrics.ttft.labels(o.provider).observe(o.ttft_s)
    gen_s = o.generation_s if o.generation_s is not None or o.ttft_s is None else latency - o.ttft_s
    if o.usage is not None and o.provider:
        metrics.tokens.labels(o.provider, "prompt").inc(o.usage.prompt_tokens)
        metrics.tokens.labels(o.provider, "completion").inc(o.usage.completion_tokens)
        if gen_s and o.usage.completion_tokens:
            metrics.tokens_per_second.labels(o.provider).observe(o.usage.completion_tokens / gen_s)
    if o.status is Status.FALLBACK and o.reason is not None:
        metrics.fallbacks.labels(o.reason.value).inc()
    fields.update(outcome=o.status.value, reason_code=o.reason)
    if o.provider:
        fields.update(provider=o.provider, model=o.model)
    if o.usage is not None:
        fields.update(prompt_tokens=o.usage.prompt_tokens, completion_tokens=o.usage.completion_tokens)
    if o.ttft_s is not None:
        fields["ttft_ms"] = round(o.ttft_s * 1000, 2)


@dataclass(frozen=True)
class Renderer:
    """How one API writes the engine's answers: a whole one as JSON, a stream as frames (that keep `outcome`
    up to date), and a failure before either (raise it to leave it to the app's exception handlers)."""

    endpoint: str
    json: Callable[[Completed, Outcome], Response]
    frames: Callable[[StreamHandle, Outcome], AsyncIterator[bytes]]
    failed: Callable[[CairnError, Outcome], Response]
    # Sent after the outcome is recorded, so a client that has read it finds the request in the metrics.
    trailer: bytes = b""


async def serve(
    request: Request,
    render: Renderer,
    shape: Callable[[Engine], Awaitable[tuple[GenerateRequest, ProviderRequest | None]]],
) -> Response:
    """`shape(engine)`: the request for the engine (and the provider request, when the API builds its own);
    a CairnError it raises is a failure like the engine's."""
    started = time.perf_counter()
    engine: Engine = request.app.state.engine
    metrics, fields = engine.registry.metrics, log_fields(request)
    outcome = Outcome(render.endpoint, started)
    try:
        req, preq = await shape(engine)
        if req.stream:
            handle = await cancel_on_disconnect(request, engine.open_stream(req, preq))
            outcome.served_by(handle)
            frames = _recorded(render.frames(handle, outcome), outcome, metrics, fields, render.trailer)
            return EventStreamResponse(frames, headers=_overhead(started, handle.ttft_s))
        done = await cancel_on_disconnect(request, engine.complete(req, preq))
    except CairnError as exc:
        outcome.fail(exc.reason_code)
        try:
            return render.failed(exc, outcome)
        finally:
            record(metrics, outcome, fields)
    outcome.served_by(done)
    response = render.json(done, outcome)
    record(metrics, outcome, fields)
    response.headers.update(_overhead(started, done.provider_s))
    return response


async def _recorded(
    frames: AsyncIterator[bytes],
    outcome: Outcome,
    metrics: GatewayMetrics,
    fields: dict[str, Any],
    trailer: bytes,
) -> AsyncIterator[bytes]:
    """`frames` as they come, the outcome recorded however they end, then the trailer."""
    try:
        async with aclosing(frames):  # type: ignore[type-var]
            async for frame in frames:
                yield frame
    except asyncio.CancelledError:
        outcome.fail(ReasonCode.CANCELLED)
        raise
    finally:
        record(metrics, outcome, fields)
    if trailer:
        yield trailer


def _overhead(started: float, provider_s: float) -> dict[str, str]:
    """The gateway's own time, the provider's taken out (`make bench` reads it)."""
    overhead = max(0.0, (time.perf_counter() - started - provider_s) * 1000)
    return {"X-Gateway-Overhead-Ms": f"{overhead:.3f}"}

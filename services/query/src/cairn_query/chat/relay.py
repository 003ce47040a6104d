"""The gateway's answer as typed events, asked for as a stream or as one JSON response (`GatewayEvent`).

A stream's frames are parsed only to know what they say; each event keeps its frame's bytes in `raw`, so what
QS relays is the gateway's own text (no re-encoding, no buffering of the answer). Every way a stream can fail
(no byte in time, a cut body, a broken frame, a refused call) ends as `Broken` with its reason code; the
pipeline decides what the user gets. One JSON response reads as the same events, so both paths decide alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

import httpx
import structlog
from cairn_core import (
    Citation,
    GenerateRequest,
    ReasonCode,
    SSEDecoder,
    SSEMessage,
    UpstreamError,
    json_loads,
)

from cairn_query.chat.events import Broken, Cited, Delta, GatewayEvent, Generated, Meta
from cairn_query.clients.gateway import GatewayClient

log = structlog.get_logger("chat")


def answered_by_of(status: str, answered_by: str | None) -> str | None:
    """Who wrote the gateway's answer; a gateway from before `answered_by` said only "ok" for the model."""
    if answered_by in ("model", "fallback_provider"):
        return answered_by
    return "model" if status == "ok" else None


async def generated(gateway: GatewayClient, req: GenerateRequest) -> AsyncGenerator[GatewayEvent, None]:
    """One `/v1/generate` JSON call, read as the events a stream of the same answer would give."""
    try:
        resp = await gateway.generate(req)
    except UpstreamError as exc:
        yield _refused(exc)
        return
    yield Meta(resp.request_id, resp.model, resp.provider)
    if resp.answer is None:
        yield Broken(resp.reason_code or ReasonCode.PROVIDER_ERROR)
        return
    yield Delta(resp.answer)
    yield Cited(resp.citations)
    yield Generated(resp.status.value, resp.answered_by, resp.reason_code, resp.usage.model_dump())


async def streamed(
    gateway: GatewayClient, req: GenerateRequest, deadline: float
) -> AsyncGenerator[GatewayEvent, None]:
    """`/v1/generate` as a stream, relayed until its `done` or `deadline` (perf_counter seconds)."""
    try:
        resp = await gateway.open_stream(req)
    except UpstreamError as exc:
        yield _refused(exc)
        return
    async with contextlib.aclosing(relay(resp, deadline)) as events:
        async for event in events:
            yield event


def _refused(exc: UpstreamError) -> Broken:
    log.info("chat_fallback", reason_code=exc.reason_code.value, detail=exc.message)
    return Broken(exc.reason_code)


async def relay(resp: httpx.Response, deadline: float) -> AsyncGenerator[GatewayEvent, None]:
    """The frames of an open gateway stream up to its `done`; the response is closed whatever happens."""
    decoder = SSEDecoder(keep_raw=True)
    chunks = resp.aiter_raw()
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancel that a client
                # disconnect sends when the chunk arrives in the same instant, and the relay then streamed the
                # whole answer to nobody while the gateway kept generating it.
                async with asyncio.timeout(max(0.001, deadline - time.perf_counter())):
                    piece = await anext(chunks)
            except StopAsyncIteration:
                yield Broken(ReasonCode.STREAM_INTERRUPTED)  # ended without `done`
                return
            for frame in decoder.feed(piece):
                event = _event(frame)
                if event is not None:
                    yield event
                if isinstance(event, Generated):
                    return
    except (TimeoutError, httpx.TimeoutException):
        yield Broken(ReasonCode.PROVIDER_TIMEOUT)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("relay_failed", error=type(exc).__name__)
        yield Broken(ReasonCode.STREAM_INTERRUPTED)
    finally:
        await resp.aclose()


def _event(frame: SSEMessage) -> GatewayEvent | None:
    """One gateway frame as its event; a malformed one raises ValueError (the stream is then broken)."""
    name, raw = frame.event, frame.raw
    if name not in ("meta", "delta", "citations", "error", "done"):
        return None
    data = json_loads(frame.data)
    if name == "meta":
        return Meta(data.get("request_id"), data.get("model"), data.get("provider"), raw)
    if name == "delta":
        return Delta(data.get("text", ""), raw)
    if name == "citations":
        return Cited([Citation.model_validate(c) for c in data.get("citations", [])], raw)
    if name == "error":  # held back: the gateway's `done` follows and says how the answer ended
        return Broken(ReasonCode(data.get("reason_code", "PROVIDER_ERROR")), final=False)
    code = data.get("reason_code")
    usage = data.get("usage") or {}
    return Generated(
        data.get("status", ""), data.get("answered_by"), ReasonCode(code) if code else None, usage, data, raw
    )

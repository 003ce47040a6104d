"""The two renderings of a chat's events (pipeline.py): one JSON `ChatResponse`, or Server-Sent Events.

The stream is `sources`, the gateway's `meta`/`delta`/`citations` relayed byte for byte, then `redacted`,
`warning`s, `fallback` as the pipeline decided, and always `done` last: the gateway's own when the model
answered, QS's otherwise (a cache hit, a fallback, a fallback provider's answer). docs/query-service.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from cairn_core import DoneEvent, MetaEvent, ReasonCode, Status, encode_event

from cairn_query.chat.events import (
    ChatEvent,
    Cited,
    Delta,
    Done,
    Fallback,
    Meta,
    Redacted,
    Sources,
    Warned,
)
from cairn_query.schemas import ChatResponse, PolicyWarning


async def render_json(
    events: AsyncGenerator[ChatEvent, None], request_id: str | None, fields: dict[str, Any] | None = None
) -> ChatResponse:
    """The events folded into one answer (the text drawn on the way is the `Done`'s, whole); `fields` (the
    request's log line) gets the outcome."""
    sources: list[dict[str, Any]] = []
    warnings: list[PolicyWarning] = []
    done: Done | None = None
    async for event in events:
        if isinstance(event, Sources):
            sources = event.sources
        elif isinstance(event, Warned):
            warnings.append(event)
        elif isinstance(event, Done):
            done = event
    assert done is not None, "the pipeline always ends with Done"
    if fields is not None:
        fields.update(done.log_fields())
    ok = done.status == "ok"
    return ChatResponse.model_validate(
        {
            "answer": done.answer,
            "citations": done.citations,
            "sources": sources,
            "status": done.status,
            "reason_code": done.reason_code,
            "message": done.message,
            "cache": done.cache,
            "model": done.model if ok else None,
            "provider": done.provider if ok else None,
            "request_id": request_id,
            "answered_by": done.answered_by,
            "policy_rule": done.policy_rule,
            "warnings": warnings,
            "passages": done.reason_code is ReasonCode.WEAK_EVIDENCE,
        }
    )


async def render_sse(
    events: AsyncGenerator[ChatEvent, None], fields: dict[str, Any]
) -> tuple[bool, AsyncIterator[bytes]]:
    """Whether the answer is cached, and the frames. The first event (the question's rules and retrieval) is
    awaited here, before any byte is sent, so an error there is still an HTTP error; `fields` (the request's
    log line) gets the outcome when the stream ends."""
    first = await anext(events)
    assert isinstance(first, Sources), "the pipeline always starts with Sources"
    return first.cached, _frames(first, events, fields)


async def _frames(
    first: Sources, events: AsyncGenerator[ChatEvent, None], fields: dict[str, Any]
) -> AsyncIterator[bytes]:
    # Closed with the response: a client that leaves closes the pipeline, and with it the gateway's stream.
    async with contextlib.aclosing(events):
        yield encode_event("sources", {"sources": first.sources})
        async for event in events:
            if isinstance(event, Done):
                fields.update(event.log_fields())
            yield sse_frame(event)


# The events that are their wire form.
_WIRE: dict[type, str] = {Redacted: "redacted", Warned: "warning", Fallback: "fallback"}


def sse_frame(event: ChatEvent) -> bytes:
    """One event as its frame; a relayed event is the gateway's bytes as they came."""
    raw = getattr(event, "raw", None)
    if raw is not None and not (isinstance(event, Done) and event.answered_by != "model"):
        return raw
    if (name := _WIRE.get(type(event))) is not None:
        return encode_event(name, event)
    if isinstance(event, Delta):
        return encode_event("delta", {"text": event.text})
    if isinstance(event, Meta):
        meta = MetaEvent(request_id=event.request_id, model=event.model, provider=event.provider)
        return encode_event("meta", meta)
    if isinstance(event, Cited):
        return encode_event("citations", {"citations": [c.model_dump(mode="json") for c in event.citations]})
    if isinstance(event, Done):
        return encode_event("done", _done(event))
    raise TypeError(f"not a chat event: {event!r}")


def _done(done: Done) -> DoneEvent:
    """QS's own `done`: for a cache hit (provider "cache"), a fallback, or a fallback provider's answer, which is
    the gateway's `done` said again as "ok" (answered), with who answered and why the model did not."""
    if done.upstream is not None and done.answered_by == "fallback_provider":
        return DoneEvent.model_validate(
            {
                **done.upstream,
                "status": Status.OK,
                "answered_by": done.answered_by,
                "latency_ms": done.latency_ms,
            }
        )
    return DoneEvent(
        status=Status(done.status),
        stop_reason=done.stop_reason,
        reason_code=done.reason_code if done.status == "fallback" else None,
        latency_ms=done.latency_ms,
        model=done.model,
        provider="cache" if done.cache == "hit" else done.provider,
        answered_by=done.answered_by,
    )

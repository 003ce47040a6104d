"""`/v1/chat` as Server-Sent Events: `sources`, then the gateway's frames relayed byte for byte, then `done`.

The relay parses each frame only to decide what to do with it; the bytes it forwards are the gateway's own
(no re-encoding, no buffering of the answer). `meta` and `delta` pass straight through; `citations` is sent
after its ids are checked against what QS retrieved, as QS's checked list (with each chunk's page); the gateway's `error` is held back, and a `done` that is not ok
(or any failure: no first byte in time, a broken stream, a silent gateway, an answer that its citations do
not support) becomes QS's own `fallback` event and `done` with `status: "fallback"` and the reason code; the
`fallback` event's `discard_answer` tells the page to drop the text it drew. The stream always ends with `done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from cairn_core import (
    Citation,
    DoneEvent,
    MetaEvent,
    ReasonCode,
    SSEDecoder,
    Status,
    StopReason,
    UpstreamError,
    encode_event,
    json_loads,
)

from cairn_query.chat.service import ChatService, Prepared, Unsupported, answered_by_of, fallback_message
from cairn_query.governance.audit import AuditUnavailable, Turn
from cairn_query.governance.policy import Finding, Verdict
from cairn_query.schemas import ChatRequest

log = structlog.get_logger("chat")


class _Relay:
    """State of one relayed stream, so the final frames can say what happened."""

    def __init__(self) -> None:
        self.answer: list[str] = []
        self.citations: list[Citation] = []
        self.model: str | None = None
        self.provider: str | None = None
        self.error: ReasonCode | None = None
        self.detail: str | None = None  # what made the answer unsupported or withheld, for the user
        self.answered_by: str | None = None
        self.done: bytes | None = None  # the `done` frame to send once governance has passed the answer
        self.usage: dict[str, Any] = {}
        self.rule: str | None = None
        self.withheld: str | None = None

    def withhold(self, finding: Finding, withheld: str | None) -> _Relay:
        """A policy rule rejected the question or the answer: say which, and keep what the user did not get."""
        self.rule, self.detail, self.withheld = finding.rule, finding.detail, withheld
        return self


async def chat_events(
    service: ChatService,
    req: ChatRequest,
    prep: Prepared,
    turn: Turn,
    rid: str | None,
    fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    """The stream of one chat; a bug on the way still ends it with `fallback` and `done`, never a cut."""
    started = time.perf_counter()
    done_sent = False
    try:
        async for frame in _events(service, req, prep, turn, rid, fields, started):
            done_sent = frame.startswith(b"event: done")
            yield frame
    except Exception as exc:
        relay = None
        if isinstance(exc, AuditUnavailable):  # QS_AUDIT_FAIL_CLOSED: the answer drawn must go
            relay = _Relay()
            relay.detail = exc.message
        else:
            log.error("chat_stream_failed", exc_info=exc)
        if not done_sent:
            async for frame in _fallback(
                service, turn, ReasonCode.INTERNAL_ERROR, True, started, relay, fields
            ):
                yield frame


async def _events(
    service: ChatService,
    req: ChatRequest,
    prep: Prepared,
    turn: Turn,
    rid: str | None,
    fields: dict[str, Any],
    started: float,
) -> AsyncIterator[bytes]:
    # NO_CONTEXT: nothing relevant was found, so no sources, as in the JSON answer.
    yield encode_event(
        "sources", {"sources": prep.sources if prep.no_answer is not ReasonCode.NO_CONTEXT else []}
    )
    if turn.rejected is not None:
        relay = _Relay().withhold(turn.rejected, None)
        async for frame in _fallback(
            service, turn, ReasonCode.POLICY_REJECTED, False, started, relay, fields
        ):
            yield frame
        return
    if prep.cached is not None:
        cached = prep.cached
        citations = [c["chunk_id"] for c in cached["citations"]]
        verdict = await service.check_answer(req, prep, cached["answer"], citations, turn)
        if verdict.rejected is not None:
            relay = _Relay().withhold(verdict.rejected, verdict.text)
            async for frame in _fallback(
                service, turn, ReasonCode.POLICY_REJECTED, False, started, relay, fields
            ):
                yield frame
            return
        fields.update(cache="hit", outcome="ok")
        yield encode_event("meta", MetaEvent(request_id=rid, model=cached.get("model"), provider="cache"))
        yield encode_event("delta", {"text": verdict.text})
        yield encode_event("citations", {"citations": cached["citations"]})
        for warning in turn.warnings:
            yield encode_event("warning", warning)
        await turn.record(
            status="ok",
            reason_code=None,
            answer=verdict.text,
            citations=cached["citations"],
            model=cached.get("model"),
            provider=cached.get("provider"),
            cache="hit",
        )
        yield encode_event(
            "done",
            DoneEvent(
                status=Status.OK,
                stop_reason=StopReason.EOS,
                model=cached.get("model"),
                provider="cache",
                latency_ms=_ms(started),
                answered_by="model",
            ),
        )
        return
    if prep.no_answer is not None:
        async for frame in _fallback(service, turn, prep.no_answer, False, started, None, fields):
            yield frame
        return
    relay = _Relay()
    code: ReasonCode | None = None
    try:
        try:
            resp = await service.gateway.open_stream(service.generate_request(req, prep, stream=True))
        except UpstreamError as exc:
            code = exc.reason_code
        else:
            async for frame in _relay(service, req, prep, resp, relay, started):
                yield frame
            code = relay.error
    finally:
        service.metrics.gateway_latency.labels("true").observe(time.perf_counter() - started)
    if code is None and relay.done is not None:
        answer = "".join(relay.answer)
        cited = [c.chunk_id for c in relay.citations]
        verdict = await service.check_answer(req, prep, answer, cited, turn)
        if verdict.rejected is None:
            async for frame in _answered(service, prep, turn, relay, answer, verdict, fields):
                yield frame
            return
        code = ReasonCode.POLICY_REJECTED
        relay.withhold(verdict.rejected, verdict.text)
    async for frame in _fallback(
        service, turn, code or ReasonCode.PROVIDER_ERROR, bool(relay.answer), started, relay, fields
    ):
        yield frame


async def _answered(
    service: ChatService,
    prep: Prepared,
    turn: Turn,
    relay: _Relay,
    answer: str,
    verdict: Verdict,
    fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    """The end of a stream the rules let through: a redaction, the warnings, the record, then `done`."""
    if verdict.text != answer:
        # The text drawn so far held what a pii rule redacts: the page replaces it with this.
        yield encode_event("redacted", {"text": verdict.text})
    for warning in turn.warnings:
        yield encode_event("warning", warning)
    by_fallback = relay.answered_by == "fallback_provider"
    fields.update(
        cache="off" if by_fallback else "miss", outcome="ok", model=relay.model, provider=relay.provider
    )
    citations = [c.model_dump(mode="json") for c in relay.citations]
    if not by_fallback:  # not cached otherwise: the model answers the next asker again, once it is back
        await service.remember(
            prep,
            {
                "answer": verdict.text,
                "citations": citations,
                "sources": prep.sources,
                "model": relay.model,
                "provider": relay.provider,
            },
        )
    await turn.record(
        status="ok",
        reason_code=None,
        answer=verdict.text,
        citations=citations,
        model=relay.model,
        provider=relay.provider,
        usage=relay.usage,
        cache="off" if by_fallback else "miss",
    )
    assert relay.done is not None
    yield relay.done


async def _relay(
    service: ChatService,
    req: ChatRequest,
    prep: Prepared,
    resp: httpx.Response,
    relay: _Relay,
    started: float,
) -> AsyncIterator[bytes]:
    """Forward the gateway's frames up to its `done`, which is kept in `relay.done` (the caller sends it after
    the rules); on any problem set `relay.error` and stop (the caller ends the stream)."""
    deadline = started + service.settings.gateway_timeout_ms / 1000
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
                relay.error = ReasonCode.STREAM_INTERRUPTED  # ended without `done`
                return
            for event in decoder.feed(piece):
                name, data, out = event.event, event.data, event.raw
                if name == "meta":
                    meta = json_loads(data)
                    relay.model, relay.provider = meta.get("model"), meta.get("provider")
                    yield out
                elif name == "delta":
                    relay.answer.append(json_loads(data).get("text", ""))
                    yield out
                elif name == "citations":
                    cited = [Citation.model_validate(c) for c in json_loads(data).get("citations", [])]
                    try:
                        relay.citations = service.check_citations(prep, cited)
                    except UpstreamError as exc:
                        relay.error = exc.reason_code
                        return
                    # Re-encoded, not relayed: QS adds what the gateway cannot know (each chunk's page).
                    citations = [c.model_dump(mode="json") for c in relay.citations]
                    yield encode_event("citations", {"citations": citations})
                elif name == "error":
                    relay.error = ReasonCode(json_loads(data).get("reason_code", "PROVIDER_ERROR"))
                elif name == "done":
                    done = json_loads(data)
                    relay.usage = done.get("usage") or {}
                    relay.answered_by = answered_by_of(done.get("status", ""), done.get("answered_by"))
                    if relay.answered_by is None or relay.error is not None:
                        relay.error = relay.error or ReasonCode(done.get("reason_code") or "PROVIDER_ERROR")
                        return
                    if req.citations_required and not relay.citations:
                        relay.error = ReasonCode.MISSING_CITATIONS
                        return
                    if req.citations_required:
                        try:
                            service.check_support(prep, "".join(relay.answer), relay.citations)
                        except Unsupported as exc:
                            log.info("chat_fallback", reason_code=exc.reason_code.value, detail=exc.message)
                            relay.error, relay.detail = exc.reason_code, exc.detail
                            relay.withheld = "".join(relay.answer)
                            return
                    if relay.answered_by == "fallback_provider":
                        # A good answer from the fallback chain: the user gets it, labelled. QS's own `done`
                        # says "ok" (answered), who answered, and why the model did not.
                        relay.done = encode_event(
                            "done",
                            DoneEvent.model_validate(
                                {
                                    **done,
                                    "status": Status.OK,
                                    "answered_by": "fallback_provider",
                                    "latency_ms": _ms(started),
                                }
                            ),
                        )
                    else:
                        relay.done = out
                    return
    except TimeoutError:
        relay.error = ReasonCode.PROVIDER_TIMEOUT
    except httpx.TimeoutException:
        relay.error = ReasonCode.PROVIDER_TIMEOUT
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("relay_failed", error=type(exc).__name__)
        relay.error = ReasonCode.STREAM_INTERRUPTED
    finally:
        await resp.aclose()


async def _fallback(
    service: ChatService,
    turn: Turn,
    code: ReasonCode,
    discard: bool,
    started: float,
    relay: _Relay | None,
    fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    service.metrics.fallbacks.labels(code.value).inc()
    fields.update(outcome="fallback", reason_code=code.value, cache="off")
    message = fallback_message(code, relay.detail if relay else None)
    rule = relay.rule if relay else None
    yield encode_event(
        "fallback",
        {
            "reason_code": code.value,
            "message": message,
            "discard_answer": discard,
            "policy_rule": rule,
            "passages": code is ReasonCode.WEAK_EVIDENCE,
        },
    )
    with contextlib.suppress(AuditUnavailable):  # the answer is withheld already: nothing more to keep
        await turn.record(
            status="fallback",
            reason_code=code.value,
            answer=message,
            withheld=relay.withheld if relay else None,
            model=relay.model if relay else None,
            provider=relay.provider if relay else None,
            usage=relay.usage if relay else None,
            rule=rule,
            message=message,
        )
    yield encode_event(
        "done",
        DoneEvent(
            status=Status.FALLBACK,
            stop_reason=StopReason.TIMEOUT if code is ReasonCode.PROVIDER_TIMEOUT else None,
            reason_code=code,
            latency_ms=_ms(started),
            model=relay.model if relay else None,
            provider=relay.provider if relay else None,
        ),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

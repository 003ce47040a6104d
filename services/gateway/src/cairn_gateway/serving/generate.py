"""`/v1/generate`: the engine's answer as the contract's JSON (`GenerateResponse`) or as its SSE events
(meta → delta… → citations? → error? → done, always ending in done).

A grounded request (`citations_required`) whose answer has unusable citations never shows them: the JSON
answer is a `fallback` with the reason code, the stream an `error` event before `done`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog
from cairn_core import (
    AnsweredBy,
    CairnError,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    GenerateRequest,
    GenerateResponse,
    JSONResponse,
    MetaEvent,
    ReasonCode,
    Status,
    StopReason,
    Usage,
    encode_event,
    request_id_of,
)
from starlette.requests import Request
from starlette.responses import Response

from ..citations import AnswerExtractor, CitationError, check_grounded
from ..engine import Completed, Engine, StreamHandle
from ..providers.base import ProviderChunk
from .base import Outcome, Renderer, serve

log = structlog.get_logger("generation")
_CITATION_CODES = {ReasonCode.MALFORMED_OUTPUT, ReasonCode.INVALID_CITATION, ReasonCode.MISSING_CITATIONS}


async def generate(request: Request, req: GenerateRequest) -> Response:
    rid = request_id_of(request)
    started = time.perf_counter()

    async def shape(engine: Engine) -> tuple[GenerateRequest, None]:
        return req, None

    def as_json(done: Completed, outcome: Outcome) -> Response:
        body = _response(done, outcome, rid, started)
        return JSONResponse(body.model_dump(mode="json"))

    def frames(handle: StreamHandle, outcome: Outcome) -> AsyncIterator[bytes]:
        return _frames(handle, req, rid, outcome)

    def failed(exc: CairnError, outcome: Outcome) -> Response:
        if req.stream or not (req.citations_required and exc.reason_code in _CITATION_CODES):
            raise exc
        # The model answered, but not with valid citations: a controlled fallback, never the bad citation.
        outcome.fail(exc.reason_code, Status.FALLBACK)
        body = GenerateResponse(
            status=Status.FALLBACK,
            reason_code=exc.reason_code,
            message=exc.message,
            request_id=rid,
            latency_ms=_ms_since(started),
        )
        return JSONResponse(body.model_dump(mode="json"))

    return await serve(request, Renderer("generate", as_json, frames, failed), shape)


def _response(done: Completed, outcome: Outcome, rid: str | None, started: float) -> GenerateResponse:
    result, grounded = done.result, done.grounded
    return GenerateResponse(
        status=outcome.status,
        text=grounded.answer if grounded else result.text,
        answer=grounded.answer if grounded else result.text,
        citations=grounded.citations if grounded else [],
        model=done.model,
        provider=done.provider_name,
        usage=result.usage,
        latency_ms=_ms_since(started),
        stop_reason=result.finish_reason,
        reason_code=outcome.reason,
        message=done.fallback_reason.message if done.fallback_reason else None,
        request_id=rid,
        answered_by="fallback_provider" if done.fallback_reason else "model",
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _frames(
    handle: StreamHandle, req: GenerateRequest, request_id: str | None, outcome: Outcome
) -> AsyncIterator[bytes]:
    model, provider = handle.model, handle.provider_name
    yield encode_event("meta", MetaEvent(request_id=request_id, model=model, provider=provider))
    try:
        async for event in _events(handle, req, request_id, outcome):
            yield event
    except Exception as exc:  # a bug: the stream still ends with `done`
        log.error("stream_failed", exc_info=exc)
        outcome.fail(ReasonCode.INTERNAL_ERROR)
        error = ErrorEvent(
            reason_code=ReasonCode.INTERNAL_ERROR,
            message="Internal error in the gateway.",
            request_id=request_id,
        )
        yield encode_event("error", error)
        done = DoneEvent(
            status=outcome.status,
            stop_reason=StopReason.ERROR,
            reason_code=outcome.reason,
            model=model,
            provider=provider,
        )
        yield encode_event("done", done)


@dataclass
class _Answer:
    """What a stream has said so far: it follows the chunks, and `done` reports it."""

    extractor: AnswerExtractor | None  # a grounded answer's text is pulled out of its JSON as it streams
    finish: StopReason | None = None
    usage: Usage = field(default_factory=Usage)
    streamed: bool = False  # some answer text went out as deltas

    def deltas(self, batch: list[ProviderChunk], outcome: Outcome) -> bytes:
        """A batch's events, in one write: what one upstream read held (docs/benchmarks.md)."""
        deltas: list[bytes] = []
        for chunk in batch:
            if chunk.text:
                piece = self.extractor.feed(chunk.text) if self.extractor else chunk.text
                if piece:
                    deltas.append(encode_event("delta", DeltaEvent(text=piece)))
            if chunk.finish_reason is not None:
                self.finish = chunk.finish_reason
            if chunk.usage is not None:
                self.usage = outcome.usage = chunk.usage
        self.streamed = self.streamed or bool(deltas)
        return b"".join(deltas)


async def _events(
    handle: StreamHandle, req: GenerateRequest, request_id: str | None, outcome: Outcome
) -> AsyncIterator[bytes]:
    """delta… → citations? → error? → done; `outcome` follows what they say."""
    answer = _Answer(AnswerExtractor() if req.citations_required else None)
    outcome.usage = answer.usage
    # Set once the whole answer is known to be good; a failure after the first byte leaves it unanswered.
    answered_by: AnsweredBy | None = None
    try:
        async for batch in handle.batches():
            if deltas := answer.deltas(batch, outcome):
                yield deltas
    except CairnError as exc:
        timeout = exc.reason_code is ReasonCode.PROVIDER_TIMEOUT
        answer.finish = StopReason.TIMEOUT if timeout else StopReason.ERROR
        # A timeout and a crashed model process say more than "interrupted": they keep their own codes.
        keeps = exc.reason_code in (ReasonCode.PROVIDER_TIMEOUT, ReasonCode.MODEL_CRASHED)
        outcome.fail(exc.reason_code if keeps else ReasonCode.STREAM_INTERRUPTED)
        yield encode_event(
            "error", ErrorEvent(reason_code=outcome.reason, message=exc.message, request_id=request_id)
        )
    else:
        try:
            if answer.extractor is not None:
                yield _citations(handle, req, answer.streamed)
            answered_by = "fallback_provider" if handle.fallback_reason else "model"
        except CitationError as exc:
            outcome.fail(exc.reason_code, Status.FALLBACK)
            yield encode_event(
                "error", ErrorEvent(reason_code=exc.reason_code, message=exc.message, request_id=request_id)
            )
    done = DoneEvent(
        status=outcome.status,
        stop_reason=answer.finish,
        usage=answer.usage,
        latency_ms=_ms_since(outcome.started),
        reason_code=outcome.reason,
        model=handle.model,
        provider=handle.provider_name,
        answered_by=answered_by,
    )
    yield encode_event("done", done)


def _citations(handle: StreamHandle, req: GenerateRequest, streamed: bool) -> bytes:
    """The checked citations of a grounded answer (and its text, when none streamed); CitationError if unusable."""
    grounded = check_grounded("".join(handle.text), req.context_chunks)
    text = b"" if streamed else encode_event("delta", DeltaEvent(text=grounded.answer))
    return text + encode_event("citations", CitationsEvent(citations=grounded.citations))

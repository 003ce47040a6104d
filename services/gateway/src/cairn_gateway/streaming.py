"""`/v1/generate` as Server-Sent Events: meta → delta… → citations? → error? → done, always ending in done."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from cairn_core import (
    AnsweredBy,
    AnswerExtractor,
    CairnError,
    CitationError,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    GenerateRequest,
    MetaEvent,
    ReasonCode,
    Status,
    StopReason,
    Usage,
    check_grounded,
    encode_event,
)

from .service import GenerationService, Outcome, StreamHandle

log = structlog.get_logger("generation")


async def generate_events(
    service: GenerationService,
    handle: StreamHandle,
    req: GenerateRequest,
    request_id: str | None,
    started: float,
    log_fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    model, provider = handle.model, handle.provider_name
    outcome = Outcome.served("generate", started, handle)
    with service.recording(outcome, log_fields):
        yield encode_event("meta", MetaEvent(request_id=request_id, model=model, provider=provider))
        try:
            async for event in _events(handle, req, request_id, outcome):
                yield event
        except Exception as exc:  # a bug: the stream still ends with `done`
            log.error("stream_failed", exc_info=exc)
            outcome.fail(ReasonCode.INTERNAL_ERROR)
            yield encode_event(
                "error",
                ErrorEvent(
                    reason_code=ReasonCode.INTERNAL_ERROR,
                    message="Internal error in the gateway.",
                    request_id=request_id,
                ),
            )
            yield encode_event(
                "done",
                DoneEvent(
                    status=outcome.status,
                    stop_reason=StopReason.ERROR,
                    reason_code=outcome.reason,
                    model=model,
                    provider=provider,
                ),
            )


async def _events(
    handle: StreamHandle, req: GenerateRequest, request_id: str | None, outcome: Outcome
) -> AsyncIterator[bytes]:
    """delta… → citations? → error? → done; `outcome` follows what they say."""
    extractor = AnswerExtractor() if req.citations_required else None
    streamed_answer = False
    finish: StopReason | None = None
    usage = outcome.usage = Usage()
    # Set once the whole answer is known to be good; a failure after the first byte leaves it unanswered.
    answered_by: AnsweredBy | None = None
    try:
        async for batch in handle.batches():
            # A batch's events go out in one write: what one upstream read held (docs/benchmarks.md).
            deltas: list[bytes] = []
            for chunk in batch:
                if chunk.text:
                    piece = extractor.feed(chunk.text) if extractor else chunk.text
                    if piece:
                        deltas.append(encode_event("delta", DeltaEvent(text=piece)))
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = outcome.usage = chunk.usage
            if deltas:
                streamed_answer = True
                yield b"".join(deltas)
    except CairnError as exc:
        timeout = exc.reason_code is ReasonCode.PROVIDER_TIMEOUT
        finish = StopReason.TIMEOUT if timeout else StopReason.ERROR
        # A timeout and a crashed model process say more than "interrupted": they keep their own codes.
        keeps = exc.reason_code in (ReasonCode.PROVIDER_TIMEOUT, ReasonCode.MODEL_CRASHED)
        outcome.fail(exc.reason_code if keeps else ReasonCode.STREAM_INTERRUPTED)
        yield encode_event(
            "error", ErrorEvent(reason_code=outcome.reason, message=exc.message, request_id=request_id)
        )
    else:
        if extractor is not None:
            try:
                grounded = check_grounded("".join(handle.text), req.context_chunks)
            except CitationError as exc:
                outcome.fail(exc.reason_code, Status.FALLBACK)
                yield encode_event(
                    "error",
                    ErrorEvent(reason_code=exc.reason_code, message=exc.message, request_id=request_id),
                )
            else:
                if not streamed_answer:
                    yield encode_event("delta", DeltaEvent(text=grounded.answer))
                yield encode_event("citations", CitationsEvent(citations=grounded.citations))
                answered_by = "fallback_provider" if handle.fallback_reason else "model"
        else:
            answered_by = "fallback_provider" if handle.fallback_reason else "model"
    yield encode_event(
        "done",
        DoneEvent(
            status=outcome.status,
            stop_reason=finish,
            usage=usage,
            latency_ms=round((time.perf_counter() - outcome.started) * 1000, 2),
            reason_code=outcome.reason,
            model=handle.model,
            provider=handle.provider_name,
            answered_by=answered_by,
        ),
    )

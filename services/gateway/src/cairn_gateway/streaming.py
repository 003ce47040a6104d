"""`/v1/generate` as Server-Sent Events: meta → delta… → citations? → error? → done, always ending in done."""

from __future__ import annotations

import asyncio
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

from .service import GenerationService, StreamHandle

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
    yield encode_event("meta", MetaEvent(request_id=request_id, model=model, provider=provider))
    extractor = AnswerExtractor() if req.citations_required else None
    streamed_answer = False
    finish: StopReason | None = None
    usage = Usage()
    status = Status.FALLBACK if handle.fallback_reason else Status.OK
    reason = handle.fallback_reason.reason_code if handle.fallback_reason else None
    # Set once the whole answer is known to be good; a failure after the first byte leaves it unanswered.
    answered_by: AnsweredBy | None = None
    try:
        try:
            async for chunk in handle.chunks():
                if chunk.text:
                    piece = extractor.feed(chunk.text) if extractor else chunk.text
                    if piece:
                        streamed_answer = True
                        yield encode_event("delta", DeltaEvent(text=piece))
                if chunk.finish_reason is not None:
                    finish = chunk.finish_reason
                if chunk.usage is not None:
                    usage = chunk.usage
        except CairnError as exc:
            status, reason = Status.ERROR, exc.reason_code
            finish = (
                StopReason.TIMEOUT if exc.reason_code is ReasonCode.PROVIDER_TIMEOUT else StopReason.ERROR
            )
            code = (
                exc.reason_code
                if exc.reason_code is ReasonCode.PROVIDER_TIMEOUT
                else ReasonCode.STREAM_INTERRUPTED
            )
            yield encode_event(
                "error", ErrorEvent(reason_code=code, message=exc.message, request_id=request_id)
            )
            reason = code
        else:
            if extractor is not None:
                try:
                    grounded = check_grounded("".join(handle.text), req.context_chunks)
                except CitationError as exc:
                    status, reason = Status.FALLBACK, exc.reason_code
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
        latency = time.perf_counter() - started
        yield encode_event(
            "done",
            DoneEvent(
                status=status,
                stop_reason=finish,
                usage=usage,
                latency_ms=round(latency * 1000, 2),
                reason_code=reason,
                model=model,
                provider=provider,
                answered_by=answered_by,
            ),
        )
    except asyncio.CancelledError:
        status, reason, finish = Status.ERROR, ReasonCode.CANCELLED, StopReason.CANCELLED
        raise
    except Exception as exc:
        log.error("stream_failed", exc_info=exc)
        status, reason = Status.ERROR, ReasonCode.INTERNAL_ERROR
        yield encode_event(
            "error",
            ErrorEvent(reason_code=reason, message="Internal error in the gateway.", request_id=request_id),
        )
        yield encode_event(
            "done",
            DoneEvent(
                status=status,
                stop_reason=StopReason.ERROR,
                reason_code=reason,
                model=model,
                provider=provider,
            ),
        )
    finally:
        latency = time.perf_counter() - started
        log_fields.update(
            provider=provider,
            model=model,
            outcome=status.value,
            reason_code=reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            ttft_ms=round(handle.ttft_s * 1000, 2),
        )
        service.metrics.ttft.labels(provider).observe(handle.ttft_s)
        service.record("generate", status.value, reason, provider, latency, usage, latency - handle.ttft_s)

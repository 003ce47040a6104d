"""`/v1/chat/completions` in OpenAI's shapes, on the same core as `/v1/generate`.

Works unchanged with the official `openai` SDK: `chat.completion` objects, `chat.completion.chunk` frames,
`stream_options.include_usage`, the `[DONE]` sentinel, and `{"error": {...}}` bodies and frames.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from cairn_core import (
    HTTP_STATUS,
    CairnError,
    GenerateRequest,
    JSONResponse,
    ReasonCode,
    StopReason,
    Usage,
    format_validation_error,
    json_dumps,
)
from pydantic import ValidationError

from .schemas import ChatCompletionRequest
from .service import GenerationService, StreamHandle

_FINISH = {StopReason.LENGTH: "length", StopReason.STOP: "stop", StopReason.EOS: "stop"}


def to_generate_request(body: ChatCompletionRequest) -> GenerateRequest:
    """The contract's request; its own limits (at most 4 stop strings, …) are a 400 here too, never a 500."""
    try:
        return GenerateRequest(
            messages=[m.to_chat() for m in body.messages],
            model=body.model,
            max_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=[body.stop] if isinstance(body.stop, str) else body.stop,
            seed=body.seed,
            stream=body.stream,
        )
    except ValidationError as exc:
        raise CairnError(ReasonCode.BAD_REQUEST, format_validation_error(exc)) from None


def openai_error(exc: CairnError, request_id: str | None) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 and exc.status_code != 429 else "server_error"
    if exc.reason_code in (ReasonCode.QUEUE_FULL, ReasonCode.RATE_LIMITED):
        kind = "rate_limit_error"
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
    return JSONResponse(
        {
            "error": {
                "message": exc.message,
                "type": kind,
                "param": None,
                "code": exc.reason_code.value,
                "reason_code": exc.reason_code.value,
                "request_id": request_id,
            }
        },
        status_code=exc.status_code or HTTP_STATUS.get(exc.reason_code, 500),
        headers=headers,
    )


def completion_body(rid: str, model: str, text: str, finish: StopReason, usage: Usage) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": _FINISH.get(finish, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage.model_dump(),
    }


def _frame(data: dict[str, Any] | str) -> bytes:
    payload = data.encode() if isinstance(data, str) else json_dumps(data)
    return b"data: " + payload + b"\n\n"


async def chunk_stream(
    service: GenerationService,
    handle: StreamHandle,
    body: ChatCompletionRequest,
    rid: str,
    started: float,
    log_fields: dict[str, Any],
) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": handle.model,
    }
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    usage = Usage()
    finish: StopReason = StopReason.EOS
    status, reason = "ok", None
    # The role frame goes out in the same write as the first token (or whatever comes first): one send less
    # on the way to the first token, the same frames for the client.
    pending = _frame(
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    try:
        async for chunk in handle.chunks():
            if chunk.text:
                yield pending + _frame(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": {"content": chunk.text}, "finish_reason": None}],
                    }
                )
                pending = b""
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        yield pending + _frame(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _FINISH.get(finish, "stop")}]}
        )
        pending = b""
        if include_usage:
            yield _frame({**base, "choices": [], "usage": usage.model_dump()})
    except asyncio.CancelledError:
        status, reason = "error", ReasonCode.CANCELLED
        raise
    except CairnError as exc:
        status, reason = "error", exc.reason_code
        yield pending + _frame(
            {
                "error": {
                    "message": exc.message,
                    "type": "server_error",
                    "code": exc.reason_code.value,
                    "reason_code": exc.reason_code.value,
                    "request_id": rid,
                }
            }
        )
    finally:
        latency = time.perf_counter() - started
        log_fields.update(
            provider=handle.provider_name,
            model=handle.model,
            outcome=status,
            reason_code=reason,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
        service.metrics.ttft.labels(handle.provider_name).observe(handle.ttft_s)
        service.record(
            "chat_completions", status, reason, handle.provider_name, latency, usage, latency - handle.ttft_s
        )
    yield _frame("[DONE]")

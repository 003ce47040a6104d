"""`/v1/chat/completions` and `/v1/completions` in OpenAI's shapes, on the same core as `/v1/generate`.

Works unchanged with the official `openai` SDK: `chat.completion` / `text_completion` objects, their streamed
frames, `stream_options.include_usage`, the `[DONE]` sentinel, and `{"error": {...}}` bodies and frames. What an
openai_compat upstream answers beyond text (tool calls, logprobs, its finish reason) is relayed as it came.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

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
    parse_json_body,
    request_id_of,
)
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..engine import Completed, Engine, StreamHandle
from ..openai_fields import forwarded
from ..protocol.openai import ChatCompletionRequest, CompletionRequest
from ..providers.base import ProviderChunk, ProviderRequest, ProviderResult
from .base import Outcome, Renderer, serve

B = TypeVar("B", ChatCompletionRequest, CompletionRequest)

_FINISH = {StopReason.LENGTH: "length", StopReason.STOP: "stop", StopReason.EOS: "stop"}
# An upstream's own finish reasons that say more than stop/length, relayed as they came.
_NATIVE_FINISH = frozenset({"tool_calls", "content_filter", "function_call"})


def _finish(reason: StopReason, native: str | None) -> str:
    return native if native in _NATIVE_FINISH else _FINISH.get(reason, "stop")


def _contract(body: ChatCompletionRequest | CompletionRequest, **given: Any) -> GenerateRequest:
    """The contract's request for `body`, its input `given`; the contract's own limits (at most 4 stop
    strings, …) are a 400 here too, never a 500."""
    sampling = {k: getattr(body, k) for k in ("model", "temperature", "top_p", "stop", "seed", "stream")}
    try:
        return GenerateRequest(**sampling, **given)
    except ValidationError as exc:
        raise CairnError(ReasonCode.BAD_REQUEST, format_validation_error(exc)) from None


def chat_request(engine: Engine, body: ChatCompletionRequest) -> tuple[GenerateRequest, ProviderRequest]:
    messages = [m.to_chat() for m in body.messages]
    req = _contract(body, messages=messages, max_tokens=body.max_completion_tokens or body.max_tokens)
    fields = forwarded(body.sent())
    # A tool conversation (or images) loses its meaning as plain text: an upstream gets the messages as sent.
    if any(m.carries_more_than_text() for m in body.messages):
        fields["messages"] = [m.to_wire() for m in body.messages]
    return req, engine.provider_request(req, openai=fields)


def completion_request(engine: Engine, body: CompletionRequest) -> tuple[GenerateRequest, ProviderRequest]:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]  # the validator made it one
    req = _contract(body, prompt=prompt, max_tokens=body.max_tokens)
    return req, engine.provider_request(req, raw=True, openai=forwarded(body.sent()))


def openai_error(exc: CairnError, request_id: str | None) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 and exc.status_code != 429 else "server_error"
    if exc.reason_code in (ReasonCode.QUEUE_FULL, ReasonCode.RATE_LIMITED):
        kind = "rate_limit_error"
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after is not None else None
    detail = {**_error_detail(exc, request_id, kind), "param": getattr(exc, "param", None)}
    return JSONResponse(
        {"error": detail},
        status_code=exc.status_code or HTTP_STATUS.get(exc.reason_code, 500),
        headers=headers,
    )


def _error_detail(exc: CairnError, request_id: str | None, kind: str = "server_error") -> dict[str, Any]:
    return {
        "message": exc.message,
        "type": kind,
        "code": exc.reason_code.value,
        "reason_code": exc.reason_code.value,
        "request_id": request_id,
    }


def chat_body(rid: str, model: str, result: ProviderResult) -> dict[str, Any]:
    extra = result.message or {}
    # OpenAI's answer that is only tool calls has `content: null`, and SDKs branch on it.
    content = result.text if result.text or not extra.get("tool_calls") else None
    message = {"role": "assistant", "content": content, **extra}
    return _answer(f"chatcmpl-{rid}", "chat.completion", model, result, {"message": message})


def text_body(rid: str, model: str, result: ProviderResult) -> dict[str, Any]:
    return _answer(f"cmpl-{rid}", "text_completion", model, result, {"text": result.text})


def _answer(
    id_: str, kind: str, model: str, result: ProviderResult, content: dict[str, Any]
) -> dict[str, Any]:
    finish = _finish(result.finish_reason, result.native_finish)
    choice = {"index": 0, **content, "finish_reason": finish, "logprobs": result.logprobs}
    return {
        "id": id_,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": result.usage.model_dump(),
    }


class ChatFrames:
    """`chat.completion.chunk` frames: a role frame first, then deltas."""

    endpoint = "chat_completions"

    def __init__(self, rid: str, model: str) -> None:
        self.base: dict[str, Any] = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk"}
        self.base |= {"created": int(time.time()), "model": model}

    def opening(self) -> dict[str, Any] | None:
        delta = {"role": "assistant", "content": ""}
        return {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    def piece(self, chunk: ProviderChunk) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": chunk.text} if chunk.text else {}
        delta.update(chunk.delta or {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if chunk.logprobs is not None:
            choice["logprobs"] = chunk.logprobs
        return {**self.base, "choices": [choice]}

    def last(self, finish: str) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}


class TextFrames:
    """`text_completion` frames, as OpenAI streams a legacy completion: the same object, piece by piece."""

    endpoint = "completions"

    def __init__(self, rid: str, model: str) -> None:
        self.base: dict[str, Any] = {"id": f"cmpl-{rid}", "object": "text_completion"}
        self.base |= {"created": int(time.time()), "model": model}

    def opening(self) -> dict[str, Any] | None:
        return None

    def _choice(self, text: str, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}

    def piece(self, chunk: ProviderChunk) -> dict[str, Any]:
        return {**self.base, "choices": [self._choice(chunk.text, None, chunk.logprobs)]}

    def last(self, finish: str) -> dict[str, Any]:
        return {**self.base, "choices": [self._choice("", finish)]}


def _frame(data: dict[str, Any] | str) -> bytes:
    payload = data.encode() if isinstance(data, str) else json_dumps(data)
    return b"data: " + payload + b"\n\n"


async def chat_completions(request: Request) -> Response:
    return await _generation(request, ChatCompletionRequest, chat_request, ChatFrames, chat_body)


async def completions(request: Request) -> Response:
    """OpenAI's legacy completions, for base models: the prompt reaches the model as is."""
    return await _generation(request, CompletionRequest, completion_request, TextFrames, text_body)


async def _generation(
    request: Request,
    model: type[B],
    shape: Callable[[Engine, B], tuple[GenerateRequest, ProviderRequest]],
    frames: type[ChatFrames | TextFrames],
    answer: Callable[[str, str, ProviderResult], dict[str, Any]],
) -> Response:
    """Either endpoint: the body is parsed here, so that even a malformed one is answered in OpenAI's shape."""
    rid = request_id_of(request) or ""
    include_usage = False

    async def shaped(engine: Engine) -> tuple[GenerateRequest, ProviderRequest]:
        nonlocal include_usage
        body = await parse_json_body(request, model)
        include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)
        return shape(engine, body)

    def as_json(done: Completed, outcome: Outcome) -> Response:
        return JSONResponse(answer(rid, done.model, done.result))

    def stream(handle: StreamHandle, outcome: Outcome) -> AsyncIterator[bytes]:
        return _frames(handle, frames(rid, handle.model), include_usage, rid, outcome)

    def failed(exc: CairnError, outcome: Outcome) -> Response:
        return openai_error(exc, rid)

    render = Renderer(frames.endpoint, as_json, stream, failed, trailer=_frame("[DONE]"))
    return await serve(request, render, shaped)


async def _frames(
    handle: StreamHandle, frames: ChatFrames | TextFrames, include_usage: bool, rid: str, outcome: Outcome
) -> AsyncIterator[bytes]:
    usage = Usage()
    finish: StopReason = StopReason.EOS
    native: str | None = None
    # The opening frame goes out in the same write as the first token (or whatever comes first): one send
    # less on the way to the first token, the same frames for the client.
    opening = frames.opening()
    pending = _frame(opening) if opening else b""
    try:
        async for batch in handle.batches():
            # A batch's frames go out in one write: what one upstream read held (docs/benchmarks.md).
            pieces: list[bytes] = []
            for chunk in batch:
                if chunk.text or chunk.delta or chunk.logprobs is not None:
                    pieces.append(_frame(frames.piece(chunk)))
                if chunk.finish_reason is not None:
                    finish, native = chunk.finish_reason, chunk.native_finish
                if chunk.usage is not None:
                    usage = outcome.usage = chunk.usage
            if pieces:
                yield pending + b"".join(pieces)
                pending = b""
        last = _frame(frames.last(_finish(finish, native)))
        if include_usage:
            last += _frame({**frames.base, "choices": [], "usage": usage.model_dump()})
        yield pending + last
    except CairnError as exc:
        outcome.fail(exc.reason_code)
        yield pending + _frame({"error": _error_detail(exc, rid)})

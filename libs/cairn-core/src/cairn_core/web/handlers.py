"""Starlette glue every service shares: error responses, exception handlers, body limits, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Mapping
from typing import Any, TypeVar

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..contract.errors import CairnError, error_body
from ..contract.reason_codes import HTTP_STATUS, ReasonCode
from .json import JSONDecodeError, JSONResponse, loads

log = structlog.get_logger("errors")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work for it has been cancelled."""


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def log_fields(request: Request) -> dict[str, Any]:
    """The dict the access-log line of this request is completed from (see RequestContextMiddleware)."""
    fields = getattr(request.state, "log_fields", None)
    if fields is None:
        fields = {}
        request.state.log_fields = fields
    return fields


def error_response(
    reason_code: ReasonCode,
    message: str,
    request_id: str | None,
    *,
    status_code: int | None = None,
    retry_after: float | None = None,
    **extra: Any,
) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse(
        error_body(reason_code, message, request_id, **extra),
        status_code=status_code or HTTP_STATUS.get(reason_code, 500),
        headers=headers,
    )


async def _cairn_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CairnError)
    log_fields(request)["reason_code"] = exc.reason_code.value
    response = error_response(
        exc.reason_code,
        exc.message,
        request_id_of(request),
        status_code=exc.status_code,
        retry_after=exc.retry_after,
    )
    if exc.status_code == 408:  # the rest of that body is never read: the connection cannot be reused
        response.headers["Connection"] = "close"
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {
        404: ReasonCode.NOT_FOUND,
        401: ReasonCode.UNAUTHORIZED,
        413: ReasonCode.PAYLOAD_TOO_LARGE,
        415: ReasonCode.UNSUPPORTED_MEDIA_TYPE,
        429: ReasonCode.RATE_LIMITED,
    }.get(exc.status_code, ReasonCode.BAD_REQUEST if exc.status_code < 500 else ReasonCode.INTERNAL_ERROR)
    return error_response(code, str(exc.detail), request_id_of(request), status_code=exc.status_code)


async def _disconnected(request: Request, exc: Exception) -> Response:
    # Nobody is listening; the status only shows in the access log.
    log_fields(request)["reason_code"] = ReasonCode.CANCELLED.value
    return error_response(ReasonCode.CANCELLED, "Client disconnected.", request_id_of(request))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never a stack trace to the client: log it with the request id, answer with a reason code.
    log.error("unhandled_exception", exc_info=exc, path=request.url.path)
    return error_response(
        ReasonCode.INTERNAL_ERROR,
        "Internal error; see the server log for this request id.",
        request_id_of(request),
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CairnError: _cairn_error,
    HTTPException: _http_error,
    ClientDisconnected: _disconnected,
    Exception: _unexpected,
}


async def parse_json_body(request: Request, model: type[M]) -> M:
    """Read and validate a JSON body; every failure becomes a 400 with a readable message."""
    raw = await request.body()
    try:
        data = loads(raw or b"null")
    except JSONDecodeError as exc:  # invalid UTF-8 included
        raise CairnError(ReasonCode.BAD_REQUEST, f"Request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CairnError(ReasonCode.BAD_REQUEST, format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "Invalid request: " + "; ".join(parts)


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 PAYLOAD_TOO_LARGE, by header and while streaming, and bodies
    that take longer than `timeout_s` to arrive with 408: a client that trickles its body would otherwise hold
    a request (and whatever it has reserved) open forever."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        seen = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body only `http.disconnect` is left to wait for, as long as it takes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise CairnError(
                    ReasonCode.BAD_REQUEST,
                    f"The request body did not arrive within {self.timeout_s:g} s.",
                    status_code=408,
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise CairnError(ReasonCode.PAYLOAD_TOO_LARGE, self._message())
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"Request body exceeds the limit of {self.max_bytes} bytes."

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = scope.get("state", {}).get("request_id")
        await error_response(ReasonCode.PAYLOAD_TOO_LARGE, self._message(), rid)(scope, receive, send)


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (a plain response has no other signal).

    The work runs in the caller's task; one watcher task cancels that task on `http.disconnect`. Cancelling
    closes whatever upstream request the work has open, so the next hop sees the disconnect too.
    """
    return await _until_disconnect(request.receive, work)


async def _until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    me = asyncio.current_task()
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        if me is not None:
            me.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            if me is not None:
                me.uncancel()  # the cancel was ours, not the server's: don't leak it into later awaits
            raise ClientDisconnected() from None
        raise
    finally:
        watcher.cancel()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """A `text/event-stream` response from an async iterator of ready frames, sent as they come.

    Starlette's StreamingResponse watches for the client leaving from an anyio task group with a second task
    and a cancel scope per response; that machinery was ~6 % of the gateway's CPU per relayed stream. Here
    the stream runs in the request's own task and the one watcher of `cancel_on_disconnect` cancels it: the
    iterator sees `CancelledError` at its current await, or is closed if it sits at a `yield`, and the request ends
    quietly, since nobody is left to answer.
    """

    def __init__(self, content: AsyncIterable[bytes], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _until_disconnect(receive, self.stream_response(send))
        except ClientDisconnected:
            # Cancelled while sending, the iterator still sits at a `yield`: close it now, not at GC time, so
            # its upstream request is closed (and the next hop sees the disconnect) at once.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()

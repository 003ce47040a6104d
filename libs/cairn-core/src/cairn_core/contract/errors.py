"""The exceptions of cairn-core, mapped to HTTP once (`EXCEPTION_HANDLERS` in cairn_core.web.handlers).

    CairnError                   reason_code, message, status_code, retry_after, details
     ├─ BadRequest               400 BAD_REQUEST (and friends: TOKEN_LIMIT, PAYLOAD_TOO_LARGE, ...)
     ├─ AuditUnavailable         an answer's audit record could not be written, and QS fails closed
     │                           (cairn_query.governance.audit)
     └─ UpstreamError            a dependency failed: PROVIDER_*, QUEUE_FULL, CIRCUIT_OPEN, ...; `retryable`,
         │                       `unreachable` say whether another attempt may succeed
         └─ Unsupported          UNSUPPORTED_ANSWER: an answer its sources do not back (cairn_query.chat.service)

    Outside the tree, because none of them is an answer to a client:
     ─ ClientDisconnected        the client went away; its work was cancelled (cairn_core.web.handlers)
     ─ RedisUnavailable          CAIRN_REDIS_URL is set but Redis does not answer at startup (cairn_core.redis)
     ─ GiveUp                    an attempt tells `retrying()` to stop (cairn_core.resilience.retrying)

Each service draws the subclasses it defines in its own `errors.py` (the gateway's: cairn_gateway.errors); the
query service's two are drawn above until it has one. Handlers read fields, never message text. Once a
response has started, an error can only become an `error` frame followed by `done` (the stream events in
cairn_core.contract.generate).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .reason_codes import HTTP_STATUS, ReasonCode


class CairnError(Exception):
    def __init__(
        self,
        reason_code: ReasonCode,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason_code = ReasonCode(reason_code)
        self.message = message
        self.status_code = status_code or HTTP_STATUS.get(self.reason_code, 500)
        self.retry_after = retry_after
        self.details = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason_code.value}, {self.message!r})"


class BadRequest(CairnError):
    def __init__(self, message: str, reason_code: ReasonCode = ReasonCode.BAD_REQUEST, **kw: Any) -> None:
        super().__init__(reason_code, message, **kw)


class UpstreamError(CairnError):
    """A dependency (provider, gateway, store) failed; callers may degrade on it.

    `retryable`: the failure came before any answer, and another attempt may well not meet it (no connection, a
    dropped one, 429/5xx): a client may call again, after `retry_after` when the server gave one, or on another
    replica. `unreachable`: no connection was made at all, so nothing was sent and the dependency is probably
    down (implies `retryable`). Only the client of a hop retries, and never once an answer has started.
    """

    def __init__(
        self,
        reason_code: ReasonCode,
        message: str,
        *,
        retryable: bool = False,
        unreachable: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(reason_code, message, **kw)
        self.retryable = retryable or unreachable
        self.unreachable = unreachable


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable


def error_body(reason_code: ReasonCode | str, message: str, request_id: str | None, **extra: Any) -> dict:
    """The JSON body of every non-OpenAI error response."""
    return {"reason_code": str(reason_code), "message": message, "request_id": request_id, **extra}


class ErrorBody(BaseModel):
    """`error_body` as a model, for the OpenAPI documents: some errors add fields (`status`, a limit)."""

    model_config = ConfigDict(extra="allow")

    reason_code: ReasonCode
    message: str
    request_id: str | None

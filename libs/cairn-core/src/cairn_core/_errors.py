"""One exception tree for every service, mapped to HTTP once.

    CairnError                 reason_code, message, status_code, retry_after
     ├─ BadRequest             400 BAD_REQUEST (and friends: TOKEN_LIMIT, PAYLOAD_TOO_LARGE, ...)
     └─ UpstreamError          a dependency failed: PROVIDER_*, QUEUE_FULL, CIRCUIT_OPEN, ...

Handlers read fields, never message text. Once a response has started, an error can only become an `error`
frame followed by `done` (see `cairn_core.contract`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ._reason_codes import HTTP_STATUS, ReasonCode


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
    """A dependency (provider, gateway, store) failed; callers may degrade on it."""


def error_body(reason_code: ReasonCode | str, message: str, request_id: str | None, **extra: Any) -> dict:
    """The JSON body of every non-OpenAI error response."""
    return {"reason_code": str(reason_code), "message": message, "request_id": request_id, **extra}


class ErrorBody(BaseModel):
    """`error_body` as a model, for the OpenAPI documents: some errors add fields (`status`, a limit)."""

    model_config = ConfigDict(extra="allow")

    reason_code: ReasonCode
    message: str
    request_id: str | None

"""The closed set of reason codes shared by every Cairn service.

A reason code is the stable, machine-readable half of every error and fallback; the human message may change,
the code may not. `docs/reason-codes.md` documents each one; `tests/test_reason_codes.py` keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    STREAM_INTERRUPTED = "STREAM_INTERRUPTED"
    MODEL_CRASHED = "MODEL_CRASHED"
    MALFORMED_OUTPUT = "MALFORMED_OUTPUT"
    INVALID_CITATION = "INVALID_CITATION"
    MISSING_CITATIONS = "MISSING_CITATIONS"
    UNSUPPORTED_ANSWER = "UNSUPPORTED_ANSWER"
    NO_CONTEXT = "NO_CONTEXT"
    WEAK_EVIDENCE = "WEAK_EVIDENCE"
    QUEUE_FULL = "QUEUE_FULL"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    TOKEN_LIMIT = "TOKEN_LIMIT"
    BAD_REQUEST = "BAD_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    DOCUMENT_TOO_COMPLEX = "DOCUMENT_TOO_COMPLEX"
    STORAGE_FULL = "STORAGE_FULL"
    NOT_FOUND = "NOT_FOUND"
    SOURCE_UNAVAILABLE = "SOURCE_UNAVAILABLE"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_REJECTED = "MODEL_REJECTED"
    RATE_LIMITED = "RATE_LIMITED"
    UNAUTHORIZED = "UNAUTHORIZED"
    POLICY_REJECTED = "POLICY_REJECTED"
    CANCELLED = "CANCELLED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# The HTTP status each code maps to when it ends a request before any byte was sent.
HTTP_STATUS: dict[ReasonCode, int] = {
    ReasonCode.PROVIDER_TIMEOUT: 504,
    ReasonCode.PROVIDER_UNAVAILABLE: 503,
    ReasonCode.PROVIDER_ERROR: 502,
    ReasonCode.STREAM_INTERRUPTED: 502,
    ReasonCode.MODEL_CRASHED: 502,
    ReasonCode.MALFORMED_OUTPUT: 502,
    ReasonCode.INVALID_CITATION: 502,
    ReasonCode.MISSING_CITATIONS: 502,
    ReasonCode.UNSUPPORTED_ANSWER: 502,
    ReasonCode.NO_CONTEXT: 200,
    ReasonCode.WEAK_EVIDENCE: 200,
    ReasonCode.QUEUE_FULL: 429,
    ReasonCode.CIRCUIT_OPEN: 503,
    ReasonCode.TOKEN_LIMIT: 400,
    ReasonCode.BAD_REQUEST: 400,
    ReasonCode.PAYLOAD_TOO_LARGE: 413,
    ReasonCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ReasonCode.DOCUMENT_TOO_COMPLEX: 422,
    ReasonCode.STORAGE_FULL: 507,
    ReasonCode.NOT_FOUND: 404,
    ReasonCode.SOURCE_UNAVAILABLE: 502,
    ReasonCode.MODEL_NOT_FOUND: 404,
    ReasonCode.MODEL_REJECTED: 422,
    ReasonCode.RATE_LIMITED: 429,
    ReasonCode.UNAUTHORIZED: 401,
    ReasonCode.POLICY_REJECTED: 403,
    ReasonCode.CANCELLED: 499,
    ReasonCode.INTERNAL_ERROR: 500,
}

# Codes after which a caller may degrade (search results, another provider) instead of failing.
DEGRADABLE: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.PROVIDER_TIMEOUT,
        ReasonCode.PROVIDER_UNAVAILABLE,
        ReasonCode.PROVIDER_ERROR,
        ReasonCode.STREAM_INTERRUPTED,
        ReasonCode.MODEL_CRASHED,
        ReasonCode.MALFORMED_OUTPUT,
        ReasonCode.INVALID_CITATION,
        ReasonCode.MISSING_CITATIONS,
        ReasonCode.UNSUPPORTED_ANSWER,
        ReasonCode.QUEUE_FULL,
        ReasonCode.CIRCUIT_OPEN,
        ReasonCode.INTERNAL_ERROR,
    }
)

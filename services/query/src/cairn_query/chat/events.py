"""What one chat yields, in order: the typed events of `pipeline.py`, read by the two renderers in `render.py`.

    Sources → (Meta → Delta… → Cited)? → Redacted? → Warned… → Fallback? → Done

`Sources` is always first and `Done` always last. Between them, a streamed answer's `Meta` and `Delta` carry the
gateway's own frame in `raw`, so the stream renderer relays the bytes it received (docs/contract.md); `Cited` is
QS's checked list (it adds each chunk's page, which the gateway cannot know).
`Generated` and `Broken` are the gateway's end as `relay.py` reads it; the pipeline decides on them and never
passes them on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cairn_core import Citation, ReasonCode, StopReason

from cairn_query.schemas import FallbackEvent, PolicyWarning, RedactedEvent


@dataclass(frozen=True, slots=True)
class Sources:
    """The search results the answer is drawn from (or the closest passages, or none for NO_CONTEXT)."""

    sources: list[dict[str, Any]]
    cached: bool  # the answer comes from the answer cache: the `X-Cache` header, set before the stream starts


@dataclass(frozen=True, slots=True)
class Meta:
    request_id: str | None
    model: str | None
    provider: str | None
    raw: bytes | None = None  # the gateway's own frame, relayed byte for byte


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Cited:
    citations: list[Citation]
    raw: bytes | None = None


# These three are their wire form (schemas.py): the stream sends them as they are.
Redacted = RedactedEvent  # a pii rule changed the answer after it was drawn: the page replaces the text
Warned = PolicyWarning  # a rule with action `warn` found something in the question or the answer
Fallback = FallbackEvent  # the answer is not given: the search results are, with a message and the code


@dataclass(frozen=True, slots=True)
class Done:
    """What the user got, whole: the JSON answer, the audit record and the stream's last frame are made of it."""

    status: Literal["ok", "fallback"]
    answer: str  # what the user reads: the answer as the rules left it, or the fallback's message
    latency_ms: float
    citations: list[Citation] = field(default_factory=list)
    reason_code: ReasonCode | None = None  # a fallback's, or why a fallback provider answered
    message: str | None = None
    cache: Literal["hit", "miss", "off"] = "off"
    model: str | None = None
    provider: str | None = None
    answered_by: Literal["model", "fallback_provider"] | None = None
    stop_reason: StopReason | None = None
    policy_rule: str | None = None
    withheld: str | None = None  # the model's answer that the user did not get (for the audit log)
    usage: dict[str, Any] | None = None
    upstream: dict[str, Any] | None = None  # the gateway's `done`, for a streamed answer
    raw: bytes | None = None  # that `done` as it came, relayed when the model answered

    def log_fields(self) -> dict[str, Any]:
        return {
            "outcome": self.status,
            "reason_code": self.reason_code.value if self.reason_code else None,
            "cache": self.cache,
            "model": self.model,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class Generated:
    """The gateway's end of an answer, as its `done` frame or its JSON response said it."""

    status: str
    answered_by: str | None
    reason_code: ReasonCode | None
    usage: dict[str, Any]
    upstream: dict[str, Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Broken:
    """The gateway's answer failed on the way (an error frame, a timeout, a cut stream, a refused call)."""

    reason_code: ReasonCode
    final: bool = True  # False: the gateway's `error` frame, held back until its `done` says how it ended


ChatEvent = Sources | Meta | Delta | Cited | Redacted | Warned | Fallback | Done
GatewayEvent = Meta | Delta | Cited | Generated | Broken

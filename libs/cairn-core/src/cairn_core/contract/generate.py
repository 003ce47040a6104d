"""The `/v1/generate` contract: the one wire format between the query service and the gateway.

Versioned by `CONTRACT_VERSION`; additive changes keep the version, anything else bumps it. Documented field by
field in `docs/contract.md`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .reason_codes import ReasonCode

CONTRACT_VERSION = "v1"


class Status(StrEnum):
    OK = "ok"
    FALLBACK = "fallback"
    ERROR = "error"


class StopReason(StrEnum):
    EOS = "eos"
    LENGTH = "length"
    STOP = "stop"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ERROR = "error"


# Who wrote an answer: the requested model, or a provider of the fallback chain (LLM_FALLBACK_PROVIDERS) after
# the model failed; null when there is no answer. With `status: "fallback"` this is what tells "answered by a
# fallback provider" (use it, labelled) apart from "not answered" (degrade). Additive: same contract version.
AnsweredBy = Literal["model", "fallback_provider"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str


class ContextChunk(BaseModel):
    chunk_id: str = Field(min_length=1, max_length=200)
    title: str | None = Field(default=None, max_length=500)
    url: str | None = Field(default=None, max_length=2000)
    text: str = Field(max_length=20_000)


class Citation(BaseModel):
    chunk_id: str
    title: str | None = None
    url: str | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @model_validator(mode="after")
    def _total(self) -> Usage:
        if not self.total_tokens:
            self.total_tokens = self.prompt_tokens + self.completion_tokens
        return self


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: list[str] | None = None
    seed: int | None = None
    stream: bool = False
    timeout_ms: int | None = Field(default=None, ge=1, le=600_000)
    citations_required: bool = False
    context_chunks: list[ContextChunk] = Field(default_factory=list, max_length=50)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if len(v) > 4:
                raise ValueError("at most 4 stop sequences")
            if any(not s or len(s) > 200 for s in v):
                raise ValueError("stop sequences must be 1 to 200 characters")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("'prompt' must not be empty")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        ids = [c.chunk_id for c in self.context_chunks]
        if len(ids) != len(set(ids)):
            raise ValueError("context_chunks have duplicate chunk_id values")
        if self.citations_required and not self.context_chunks:
            raise ValueError("'citations_required' needs at least one entry in 'context_chunks'")
        return self

    def as_messages(self) -> list[ChatMessage]:
        if self.messages is not None:
            return list(self.messages)
        return [ChatMessage(role="user", content=self.prompt or "")]


class GenerateResponse(BaseModel):
    contract_version: str = CONTRACT_VERSION
    status: Status
    text: str = ""
    answer: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    stop_reason: StopReason | None = None
    reason_code: ReasonCode | None = None
    message: str | None = None
    request_id: str | None = None
    answered_by: AnsweredBy | None = None


# --- stream events: meta → delta… → citations? → error? → done ---------------------------------------------


class MetaEvent(BaseModel):
    request_id: str | None
    model: str | None
    provider: str | None
    contract_version: str = CONTRACT_VERSION


class DeltaEvent(BaseModel):
    text: str


class CitationsEvent(BaseModel):
    citations: list[Citation]


class ErrorEvent(BaseModel):
    reason_code: ReasonCode
    message: str
    request_id: str | None = None


class DoneEvent(BaseModel):
    status: Status
    stop_reason: StopReason | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    reason_code: ReasonCode | None = None
    model: str | None = None
    provider: str | None = None
    answered_by: AnsweredBy | None = None


EVENT_TYPES: dict[str, type[BaseModel]] = {
    "meta": MetaEvent,
    "delta": DeltaEvent,
    "citations": CitationsEvent,
    "error": ErrorEvent,
    "done": DoneEvent,
}

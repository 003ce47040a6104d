"""Search and chat: the questions, the answers and the stream's events."""

from __future__ import annotations

from typing import Literal

from cairn_core import ChatMessage, Citation, ReasonCode
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cairn_query.schemas.common import (
    _NAME,
    MAX_CONVERSATION_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_QUESTION_CHARS,
    MetadataValue,
    _check_filters,
)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    top_k: int | None = Field(default=None, ge=1, le=50)
    collection: str | None = Field(default=None, pattern=_NAME)
    filters: dict[str, MetadataValue] = Field(default_factory=dict)

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        return _check_filters(v)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, max_length=MAX_QUESTION_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, max_length=50)
    collection: str | None = Field(default=None, pattern=_NAME)
    filters: dict[str, MetadataValue] = Field(default_factory=dict)
    top_k: int | None = Field(default=None, ge=1, le=20)

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        return _check_filters(v)

    stream: bool = False
    citations_required: bool = True
    model: str | None = Field(default=None, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1)
    # false: answer afresh, never from the answer cache (what "regenerate" asks for).
    cache: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> ChatRequest:
        if (self.query is None) == (self.messages is None):
            raise ValueError("give exactly one of 'query' or 'messages'")
        if self.query is not None and not self.query.strip():
            raise ValueError("'query' must not be empty")
        if self.messages is not None:
            if not any(m.role == "user" and m.content.strip() for m in self.messages):
                raise ValueError("'messages' needs at least one non-empty user message")
            if len(self.question) > MAX_QUESTION_CHARS:
                raise ValueError(f"the last user message must be at most {MAX_QUESTION_CHARS} characters")
            if any(len(m.content) > MAX_MESSAGE_CHARS for m in self.messages):
                raise ValueError(f"each message must be at most {MAX_MESSAGE_CHARS} characters")
            if sum(len(m.content) for m in self.messages) > MAX_CONVERSATION_CHARS:
                raise ValueError(f"'messages' must be at most {MAX_CONVERSATION_CHARS} characters in all")
        return self

    @property
    def question(self) -> str:
        """The retrieval query: the last user message."""
        if self.query is not None:
            return self.query.strip()
        assert self.messages is not None
        return next(m.content for m in reversed(self.messages) if m.role == "user" and m.content.strip())

    def conversation(self) -> list[ChatMessage]:
        if self.messages is not None:
            return list(self.messages)
        return [ChatMessage(role="user", content=self.question)]


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    title: str | None
    section: str | None = None
    page: int | None = None  # the page or slide, for a citation link (`#page=N` on the original PDF)
    url: str | None
    score: float
    bm25_rank: int | None
    vector_rank: int | None
    similarity: float | None
    text: str
    snippet: str
    metadata: dict[str, MetadataValue]
    collection: str


class SearchResponse(BaseModel):
    results: list[SearchHit]
    mode: Literal["hybrid", "bm25"]
    took_ms: float
    request_id: str | None


class ChatResponse(BaseModel):
    answer: str
    citations: list[Citation]
    sources: list[SearchHit]
    status: Literal["ok", "fallback"]
    reason_code: ReasonCode | None
    message: str | None
    cache: Literal["hit", "miss", "off"]
    model: str | None
    provider: str | None
    request_id: str | None
    # Who wrote `answer` when status is "ok": the model, or a fallback provider after the model failed (then
    # `reason_code` says why, `provider` names it, and `message` says so in words). Null for fallbacks.
    answered_by: Literal["model", "fallback_provider"] | None = None
    # Governance (docs/governance.md): the rule that withheld the answer (reason_code POLICY_REJECTED), and
    # what the rules with action `warn` found in the question or the answer.
    policy_rule: str | None = None
    warnings: list[PolicyWarning] = []
    # True when the evidence was middling (reason_code WEAK_EVIDENCE): `sources` are the closest passages,
    # shown instead of an answer, and `answer` says so; never true for an answer (docs/query-service.md).
    passages: bool = False


class PolicyWarning(BaseModel):
    rule: str
    message: str


class RedactedEvent(BaseModel):
    text: str


class HybridResponse(BaseModel):
    text: str
    score: float
    relevance: float
    grounding: float
    sources: list[SearchHit]
    citations: list[Citation]
    status: Literal["ok", "fallback"]
    reason_code: ReasonCode | None
    policy_rule: str | None = None
    warnings: list[PolicyWarning] = []
    request_id: str | None


class SourcesEvent(BaseModel):
    sources: list[SearchHit]


class FallbackEvent(BaseModel):
    reason_code: ReasonCode
    message: str
    discard_answer: bool
    policy_rule: str | None = None
    passages: bool = (
        False  # WEAK_EVIDENCE: the `sources` sent first are the closest passages, not an answer's
    )


class QueryReady(BaseModel):
    status: Literal["ready"]
    documents: int
    chunks: int
    gateway_circuit: Literal["open", "closed"]

"""Conversations, their messages and ratings."""

from __future__ import annotations

from typing import Literal

from cairn_core import Citation
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cairn_query.schemas.chat import PolicyWarning
from cairn_query.schemas.common import _NAME, MAX_QUESTION_CHARS, MetadataValue, _check_filters


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="New chat", min_length=1, max_length=200)


class MessageIn(BaseModel):
    """`POST /v1/conversations/{id}/messages`: a new question, or `regenerate` the last answer."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(default=None, max_length=MAX_QUESTION_CHARS)
    regenerate: bool = False
    stream: bool = False
    collection: str | None = Field(default=None, pattern=_NAME)
    filters: dict[str, MetadataValue] = Field(default_factory=dict)
    top_k: int | None = Field(default=None, ge=1, le=20)
    model: str | None = Field(default=None, max_length=200)

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        return _check_filters(v)

    @model_validator(mode="after")
    def _one_input(self) -> MessageIn:
        if self.regenerate == bool(self.content and self.content.strip()):
            raise ValueError("give either a non-empty 'content' or 'regenerate': true")
        return self


class ConversationOut(BaseModel):
    id: str
    title: str
    created_at: str
    updated_at: str
    messages: int


class ConversationList(BaseModel):
    conversations: list[ConversationOut]
    total: int


class StoredMessage(BaseModel):
    """A message of a conversation; an assistant's carries what the page needs to draw it again."""

    model_config = ConfigDict(extra="allow")

    id: int
    role: Literal["user", "assistant"]
    content: str
    request_id: str | None = None
    created_at: str
    status: Literal["ok", "fallback"] | None = None
    reason_code: str | None = None
    message: str | None = None
    citations: list[Citation] = []
    warnings: list[PolicyWarning] = []
    rating: Literal["up", "down"] | None = None
    comment: str | None = None


class ConversationDetail(BaseModel):
    id: str
    title: str
    created_at: str
    updated_at: str
    messages: list[StoredMessage]


class ConversationDeleted(BaseModel):
    id: str
    deleted: bool


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    request_id: str
    rating: Literal["up", "down"]
    comment: str | None
    at: str


class FeedbackRow(FeedbackOut):
    key_id: str
    question: str | None = None
    answer: str | None = None


class FeedbackCounts(BaseModel):
    up: int
    down: int


class FeedbackList(BaseModel):
    feedback: list[FeedbackRow]
    counts: FeedbackCounts

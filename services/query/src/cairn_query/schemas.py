"""Wire models of the query service's API (docs/query-service.md)."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from cairn_core import ChatMessage, Citation, ReasonCode
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[A-Za-z0-9._-]{1,64}$"
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Finite floats only: NaN (which a multipart `metadata` field can carry, json.loads takes it) would be stored as
# `NaN`, which is not JSON, and every filtered search over the store then failed in SQLite's json_extract.
MetadataValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
_METADATA_CHARS = 16_384  # as JSON; metadata is for filters and labels, not for content


def _lone_surrogate(s: str) -> bool:
    # JSON's "\ud800" escape decodes to a str that SQLite (and any UTF-8 writer) cannot store.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_metadata(v: Any) -> Any:
    """Readable refusals, before the type check, of what would break storing or filtering on it later."""
    if not isinstance(v, dict):
        raise ValueError("'metadata' must be a JSON object")
    for key, value in v.items():
        if isinstance(value, float) and not math.isfinite(value):
            # SQLite before 3.42 rejects the stored JSON, and every filtered search would fail with it.
            raise ValueError(f"metadata {key!r} must be a finite number, not {value}")
        if any(isinstance(s, str) and _lone_surrogate(s) for s in (key, value)):
            raise ValueError(f"metadata {key!r} holds a lone surrogate (not valid Unicode)")
    if len(json.dumps(v, ensure_ascii=False, default=str)) > _METADATA_CHARS:
        raise ValueError(f"metadata must be at most {_METADATA_CHARS} characters as JSON")
    return v


# Text caps. The body limit (12 MB, for uploads) is no cap on a question: a 960 KB question sent as
# `messages` went to retrieval and the model whole. The question itself is held to the same 4,000 characters
# as `query`; the conversation around it gets room for a few long answers, no more.
MAX_QUESTION_CHARS = 4000
MAX_MESSAGE_CHARS = 8000
MAX_CONVERSATION_CHARS = 32_000
MAX_FILTER_VALUE_CHARS = 500


def _check_filters(v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    # Keys become a JSON path in SQL: only plain names, and a handful of them.
    if len(v) > 10 or not all(_FILTER_KEY.match(k) for k in v):
        raise ValueError("at most 10 filters, keys of letters, digits, '_' or '-'")
    if any(isinstance(x, str) and len(x) > MAX_FILTER_VALUE_CHARS for x in v.values()):
        raise ValueError(f"filter values of at most {MAX_FILTER_VALUE_CHARS} characters")
    return v


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=5_000_000)
    title: str | None = Field(default=None, max_length=500)
    url: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    collection: str = Field(default="default", pattern=_NAME)
    id: str | None = Field(default=None, pattern=_NAME)

    @field_validator("text")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("'text' must not be empty")
        return v

    @field_validator("text", "title", "url")
    @classmethod
    def _valid_unicode(cls, v: str | None) -> str | None:
        if v is not None and _lone_surrogate(v):
            raise ValueError("must be valid Unicode (it holds a lone surrogate)")
        return v

    @field_validator("id")
    @classmethod
    def _reachable(cls, v: str | None) -> str | None:
        # The id is a path segment (/v1/documents/{id}); "." and ".." are resolved away by every URL client
        # and the BFF, so such a document could never be fetched or deleted again.
        if v in (".", ".."):
            raise ValueError("'.' and '..' cannot be document ids")
        return v

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_storable(cls, v: Any) -> Any:
        return _check_metadata(v)

    @field_validator("metadata")
    @classmethod
    def _flat(cls, v: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        if len(v) > 50 or any(len(k) > 64 or not k for k in v):
            raise ValueError("at most 50 metadata keys of 1-64 characters")
        return v


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


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


# --- what QS answers (for /openapi.json; the handlers build these shapes from the store's rows) -----------


class DocumentSummary(BaseModel):
    id: str
    collection: str
    title: str | None
    url: str | None
    metadata: dict[str, MetadataValue]
    chunks: int
    # False while a chunk lacks vectors (the gateway could not embed it): found by keywords only until the
    # retry (QS_EMBED_RETRY_S) or POST /admin/reembed fills them in.
    embedded: bool
    created_at: str
    updated_at: str


class DocumentStored(DocumentSummary):
    created: bool
    changed: bool
    # Sentences this upload left without a vector of their own (QS_MAX_SENTENCE_VECTORS_PER_*).
    sentences_without_vector: int


class DocumentDetail(DocumentSummary):
    text: str
    chunk_ids: list[str]


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    total: int


class CollectionSummary(BaseModel):
    name: str
    documents: int


class CollectionList(BaseModel):
    collections: list[CollectionSummary]


class DocumentDeleted(BaseModel):
    id: str
    deleted: Literal[True]
    chunks: int


class ChunkOut(BaseModel):
    chunk_id: str
    document_id: str
    index: int
    title: str | None
    section: str | None = None  # the headings above the chunk in its document, "A › B"
    page: int | None = None  # the page (PDF, scan) or slide (PPTX) the chunk is on
    # The content type of the document's kept upload (GET /v1/documents/{id}/original), or None.
    original: str | None = None
    url: str | None
    collection: str
    metadata: dict[str, MetadataValue]
    text: str


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


class PolicyRule(BaseModel):
    name: str
    kind: str
    action: Literal["pass", "warn", "reject"]


class PolicyState(BaseModel):
    source: str
    rules: list[PolicyRule]
    reloaded: bool | None = None


class AuditRecord(BaseModel):
    """One answer as it was recorded (extra fields may follow in later versions)."""

    model_config = ConfigDict(extra="allow")

    id: int
    hash: str
    at: str
    kind: Literal["answer"]
    request_id: str | None
    trace_id: str | None = None
    key_id: str | None = None
    collection: str | None = None
    question: str | None = None
    retrieved: list[str] = []
    cited: list[str] = []
    answer: str | None = None
    withheld: str | None = None
    model: str | None = None
    provider: str | None = None
    outcome: Literal["ok", "fallback", "warn"]
    reason_code: str | None = None
    rule: str | None = None
    rules: list[dict[str, str]] = []
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class AuditEvent(BaseModel):
    """A login, a permission change or an API key change (`?kind=`; http/identity.py), as it was recorded."""

    model_config = ConfigDict(extra="allow")

    id: int
    hash: str
    at: str
    kind: Literal["login", "permissions", "key", "retention"]
    outcome: str
    request_id: str | None = None
    by: dict[str, Any] | None = None


class AuditPage(BaseModel):
    records: list[AuditRecord | AuditEvent]
    next_after_id: int | None


class AuditVerdict(BaseModel):
    ok: bool
    records: int
    head: str
    anchor: str
    first_bad_id: int | None
    problem: str | None


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


class ReembedResult(BaseModel):
    chunks: int
    model: str | None
    dims: int | None


class QueryReady(BaseModel):
    status: Literal["ready"]
    documents: int
    chunks: int
    gateway_circuit: Literal["open", "closed"]


class DocumentBatchIn(BaseModel):
    """`POST /v1/documents/batch`: documents ingested in the background as one job (corpus/ingest_jobs.py)."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)


class IngestFailure(BaseModel):
    index: int | None  # the document's place in the batch
    id: str | None
    reason_code: str
    message: str


class IngestJobOut(BaseModel):
    id: str
    state: Literal["running", "done", "failed"]
    total: int
    done: int  # stored + unchanged + failed
    stored: int
    unchanged: int  # same content hash as stored: nothing embedded or written
    chunks: int
    failed: list[IngestFailure]
    started_at: str
    finished_at: str | None


# --- users, groups and permissions (governance/access.py, http/identity.py) -------------------------------

# `user:<id>`, `group:<name>` or `*` (everyone who signed in).
_PRINCIPAL = r"^(\*|(user|group):[^\s,]{1,200})$"
Principal = Annotated[str, Field(pattern=_PRINCIPAL)]


class PermissionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: Principal | None = None
    writers: list[Principal] = Field(default_factory=list, max_length=500)
    readers: list[Principal] = Field(default_factory=list, max_length=500)


class PermissionsOut(BaseModel):
    collection: str
    owner: str | None
    writers: list[str]
    readers: list[str]


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200, pattern=r"^[^\s,]+$")
    name: str = Field("", max_length=200)
    groups: list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s,]+$")]] = Field(
        default_factory=list, max_length=200
    )
    admin: bool = False


class ApiKeyOut(BaseModel):
    id: str
    user: str
    name: str
    groups: list[str]
    admin: bool
    created_at: str
    created_by: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself, shown this once; only its hash is stored")


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class ApiKeyResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex")


class ResolvedIdentity(BaseModel):
    user: str
    name: str
    groups: list[str]
    admin: bool


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=200)
    groups: list[str] = Field(default_factory=list, max_length=200)
    admin: bool = False
    via: Literal["oidc", "proxy", "key"] = "oidc"


class Recorded(BaseModel):
    recorded: bool

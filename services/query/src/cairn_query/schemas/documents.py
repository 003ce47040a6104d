"""Documents, collections, chunks and ingest jobs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cairn_query.schemas.common import _NAME, MetadataValue, _check_metadata, _lone_surrogate


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


class ReembedResult(BaseModel):
    chunks: int
    model: str | None
    dims: int | None


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

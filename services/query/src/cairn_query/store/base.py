"""What every store backend shares: the `Store` protocol the rest of QS codes against, the row types, the
query-word rules and the ownership and size errors.

Callers (documents.py, retrieval.py, routes.py, evidence.py) see only this protocol, so which backend holds
the corpus (SQLite file or PostgreSQL) is decided once, in `open_store`. All calls are blocking and are run
in a worker thread by the caller (`asyncio.to_thread`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cairn_query.store.audit import AuditTable

if TYPE_CHECKING:
    from cairn_query.store.connectors import SqlConnectors
    from cairn_query.store.conversations import SqlConversations
    from cairn_query.store.permissions import SqlPermissions

# Between the headings of a section path, as the chat page shows it; stored in chunk headings, so it lives with
# the store (the store imports nothing from the domain: corpus/normalise.py takes it from here).
PATH_SEPARATOR = " › "

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that match almost every chunk and would make any question look answerable.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "into",
        "please",
        "tell",
        "know",
    ]
)

# Who owns a document (documents.owner): the BFF's "key:<fingerprint>" or "local", or OPERATOR for a
# caller at QS itself (it holds the internal token, so it may write any id). Rows from before owners were
# kept are the page's: that is who wrote them under the default local mode.
OPERATOR = "operator"
LEGACY_OWNER = "local"
# The uploaded file behind a document, one row per document, gone with it; `blob` is each dialect's type.
ORIGINALS_SCHEMA = """CREATE TABLE IF NOT EXISTS originals (
    document_id TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    data {blob} NOT NULL
)"""


class StoreError(Exception):
    """Base of the store's own errors."""


class NotOwner(StoreError):
    """The document id belongs to another client; nothing was written."""

    def __init__(self, doc_id: str) -> None:
        super().__init__(doc_id)
        self.doc_id = doc_id


class StoreFull(StoreError):
    """Storing a document would pass the store's limit of chunks; nothing was written."""

    def __init__(self, stored: int, adding: int, limit: int) -> None:
        super().__init__(f"{stored} chunks stored, {adding} more would pass the limit of {limit}")
        self.stored, self.adding, self.limit = stored, adding, limit


class SchemaTooNew(StoreError):
    """The store was written by a newer Cairn; this code would misread it, so it refuses to open it."""

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"the store at {where} has schema version {found}, newer than the {known} this Cairn knows:"
            " upgrade Cairn (or point QS at another store); it was left unchanged"
        )
        self.found, self.known = found, known


def may_write(stored_owner: str | None, owner: str) -> bool:
    return owner == OPERATOR or (stored_owner or LEGACY_OWNER) == owner


def query_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, deduplicated, at most 32: what both backends search for."""
    words = [w.lower() for w in _WORD.findall(text)]
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOPWORDS))[:32]


def fts_query(text: str) -> str | None:
    terms = query_terms(text)
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def heading(title: str | None, section: str | None) -> str | None:
    """A document's title and a chunk's section path as one line; the section alone repeats no title."""
    if section and title and section.split(PATH_SEPARATOR)[0] == title:
        return section
    return PATH_SEPARATOR.join(p for p in (title, section) if p) or None


@dataclass
class ChunkRow:
    rowid: int
    chunk_id: str
    document_id: str
    index: int
    text: str
    title: str | None
    url: str | None
    collection: str
    metadata: dict[str, Any]
    section: str | None = None  # the headings above the chunk in its document ("Data model › Slots")
    page: int | None = None  # the page (PDF) or slide (PPTX) the chunk is on; None where a format has none

    @property
    def heading(self) -> str | None:
        """What the chunk is about, put in front of its text wherever it is read (vectors, keywords, the
        support check, the model's context): its document's title, then its section."""
        return heading(self.title, self.section)

    def public(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "index": self.index,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "url": self.url,
            "collection": self.collection,
            "metadata": self.metadata,
            "text": self.text,
        }


@dataclass
class NewDocument:
    id: str
    collection: str
    title: str | None
    url: str | None
    metadata: dict[str, Any]
    text: str
    content_hash: str
    chunks: list[str]
    # Per chunk: the vector of the whole chunk, then one per sentence (documents.vector_texts).
    embeddings: list[list[list[float]]] | None = None
    embed_model: str | None = None
    owner: str = OPERATOR
    # Per chunk: its section path (normalise.Section.name), or None before the first heading; empty: none.
    sections: list[str | None] = field(default_factory=list)

    # Per chunk: its page or slide number (normalise.Section.page), or None; empty: none.
    pages: list[int | None] = field(default_factory=list)
    # The uploaded file itself, (content type, bytes), kept for PDFs so a citation can open it at its page.
    original: tuple[str, bytes] | None = None

    def section(self, i: int) -> str | None:
        return self.sections[i] if i < len(self.sections) else None

    def page(self, i: int) -> int | None:
        return self.pages[i] if i < len(self.pages) else None


class Store(Protocol):
    """The corpus: documents, their chunks, a keyword index and each chunk's vectors.

    Every write is one transaction and bumps the corpus `version` (caches key on it). A chunk's vectors are
    the whole chunk's first, then one per sentence; vector search scores a chunk by the best of them.
    """

    # The audit log (audit.py), in the same database as the corpus.
    @property
    def audit(self) -> AuditTable: ...

    # Conversations and ratings (conversations.py), owner-scoped.
    @property
    def conversations(self) -> SqlConversations: ...

    # Collection permissions and API keys (permissions.py).
    @property
    def permissions(self) -> SqlPermissions: ...
    # Connector sources and what each synced (connectors.py).
    @property
    def connectors(self) -> SqlConnectors: ...

    def close(self) -> None: ...

    # meta
    def meta(self) -> dict[str, str]: ...
    def version(self) -> int: ...
    def embed_model(self) -> tuple[str | None, int | None]: ...
    def stats(self, collections: list[str] | None = None) -> dict[str, int]: ...

    # documents
    def content_hash(self, doc_id: str) -> str | None: ...
    def check_room(self, doc_id: str, adding: int, limit: int) -> None: ...
    def upsert(self, doc: NewDocument, max_chunks: int | None = None) -> tuple[dict[str, Any], bool]: ...
    def upsert_many(
        self, docs: Sequence[NewDocument], max_chunks: int | None = None
    ) -> list[tuple[dict[str, Any], bool]]: ...
    def owner_of(self, doc_id: str) -> tuple[bool, str | None]: ...
    def delete_document(self, doc_id: str, owner: str = OPERATOR) -> int | None: ...
    # `collections` on a read is the caller's permission filter (governance/access.py), applied inside the
    # query: None reads everything (the operator, an admin), [] reads nothing.
    def get_document(
        self, doc_id: str, with_text: bool = False, collections: list[str] | None = None
    ) -> dict[str, Any] | None: ...
    # The uploaded file behind a document, where one was kept: (content type, bytes); only its type.
    def original(self, doc_id: str) -> tuple[str, bytes] | None: ...
    def original_type(self, doc_id: str) -> str | None: ...
    def list_documents(
        self,
        collection: str | None,
        limit: int,
        offset: int,
        q: str | None = None,
        collections: list[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]: ...
    def list_collections(self, collections: list[str] | None = None) -> list[dict[str, Any]]: ...

    # chunks
    def get_chunk(self, chunk_id: str, collections: list[str] | None = None) -> ChunkRow | None: ...
    def chunks_by_rowid(
        self, rowids: Sequence[int], collections: list[str] | None = None
    ) -> dict[int, ChunkRow]: ...
    def vectors_of(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def chunks_of(self, doc_id: str) -> list[ChunkRow]: ...  # in order
    def without_vectors(self, limit: int) -> list[str]: ...  # ids of documents with a chunk lacking vectors
    def all_chunk_texts(self, after_rowid: int, limit: int) -> list[tuple[int, str]]: ...
    def set_vectors(self, model: str, vectors: dict[int, list[list[float]]], reset: bool) -> None: ...

    # retrieval
    def bm25(
        self,
        query: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[int]: ...
    def vector_search(
        self,
        vector: list[float],
        model: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[tuple[int, float]] | None: ...


def _json(value: Any) -> Any:
    """A JSON column as read: SQLite gives its text, psycopg the decoded value."""
    return json.loads(value) if isinstance(value, str) else value


def document_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A document as the API shows it, from a row of either backend (`n`: its chunks, `embedded`)."""
    return {
        "id": row["id"],
        "collection": row["collection"],
        "title": row["title"],
        "url": row["url"],
        "metadata": _json(row["metadata"]),
        "chunks": int(row["n"]),
        "embedded": bool(row["embedded"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def chunk_row(row: Mapping[str, Any]) -> ChunkRow:
    return ChunkRow(
        rowid=row["rowid"],
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        index=row["idx"],
        text=row["text"],
        title=row["title"],
        url=row["url"],
        collection=row["collection"],
        metadata=_json(row["metadata"]),
        section=row["section"],
        page=row["page"],
    )

"""The embedded store (the default backend): SQLite (WAL) with documents, chunks, an FTS5 index (BM25) and
the vectors.

One file holds everything, so a document and all its chunks, index rows and vectors are written in one
transaction (nothing half-way) and survive restarts. Two connections: writes go through one, serialised by a
lock; reads use the other, and WAL lets them run while a write is in progress. All calls are blocking and are
run in a worker thread by the caller (`asyncio.to_thread`).

Vector search is numpy brute force over a float32 matrix held in memory, rebuilt when the corpus version in
`meta` changes (so several processes on one file agree). At tens of thousands of chunks a matrix-vector
product takes milliseconds, below what an ANN index would save (see `make bench`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cairn_query.store.audit import AUDIT_SCHEMA, SqlAuditTable
from cairn_query.store.base import (
    LEGACY_OWNER,
    OPERATOR,
    ORIGINALS_SCHEMA,
    ChunkRow,
    NewDocument,
    NotOwner,
    SchemaTooNew,
    StoreFull,
    fts_query,
    heading,
    like_pattern,
    may_write,
    now_iso,
    scrub,
    to_json,
)
from cairn_query.store.base import normalise as _normalise
from cairn_query.store.connectors import CONNECTORS_SCHEMA, SqlConnectors
from cairn_query.store.conversations import CONVERSATIONS_SCHEMA, SqlConversations
from cairn_query.store.permissions import PERMISSIONS_SCHEMA, SqlPermissions

# Versioned migrations: the store's `schema_version` (in meta) says how many of these it has had. Each runs
# in the transaction that records it, so a crash leaves the store at one version or the next. Stores from
# before versioning have no schema_version; they are version 1, or 2 once they have the owner column.
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    title TEXT,
    url TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS documents_collection ON documents(collection, seq);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, title, tokenize='porter unicode61');
INSERT OR IGNORE INTO meta VALUES ('version', '0');
"""


def _migrate_2(conn: sqlite3.Connection) -> None:
    """Document ids are scoped to their owner (documents.owner); rows written before stay NULL (legacy)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
    if "owner" not in columns:
        conn.execute("ALTER TABLE documents ADD COLUMN owner TEXT")


def _migrate_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_3(conn: sqlite3.Connection) -> None:
    """The audit log (audit.py): one hash-chained row per answer."""
    for statement in AUDIT_SCHEMA.format(id_type="INTEGER").split(";"):
        conn.execute(statement)


def _migrate_4(conn: sqlite3.Connection) -> None:
    """Conversations, their messages and ratings (conversations.py)."""
    for statement in CONVERSATIONS_SCHEMA.format(id_type="INTEGER").split(";"):
        conn.execute(statement)


def _migrate_5(conn: sqlite3.Connection) -> None:
    """Each chunk's section path (the headings above it); chunks stored before have none."""
    conn.execute("ALTER TABLE chunks ADD COLUMN section TEXT")


def _migrate_6(conn: sqlite3.Connection) -> None:
    """Connector sources and what each synced (connectors.py)."""
    for statement in CONNECTORS_SCHEMA.split(";"):
        conn.execute(statement)


def _migrate_7(conn: sqlite3.Connection) -> None:
    """Collection permissions and API keys (permissions.py)."""
    for statement in PERMISSIONS_SCHEMA.split(";"):
        conn.execute(statement)


def _migrate_8(conn: sqlite3.Connection) -> None:
    """Each chunk's page or slide number (PDF, PPTX, scans); chunks stored before have none."""
    conn.execute("ALTER TABLE chunks ADD COLUMN page INTEGER")


def _migrate_9(conn: sqlite3.Connection) -> None:
    """The uploaded file behind a document (PDFs), so a citation can open it at its page."""
    conn.execute(ORIGINALS_SCHEMA.format(blob="BLOB"))


MIGRATIONS = [
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
    _migrate_5,
    _migrate_6,
    _migrate_7,
    _migrate_8,
    _migrate_9,
]
# A document is `embedded` when none of its chunks lacks vectors (the gateway could not embed it, or the store
# holds another model's): until then it is found by keywords only.
_EMBEDDED = "NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id=d.id AND c.embedding IS NULL) AS embedded"
SCHEMA_VERSION = len(MIGRATIONS)


class _Connection(sqlite3.Connection):
    """Binds every parameter through `scrub`, as postgres.py's cursor does: one rule for text on both."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, scrub(parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return super().executemany(sql, (scrub(p) for p in parameters))


@dataclass
class _VectorIndex:
    """Every stored vector as a row; a chunk's rows are contiguous, starting at `starts[i]` for `chunks[i]`."""

    version: int = -1
    model: str | None = None
    rowids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # chunk rowid per row
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    masks: dict[str, np.ndarray] = field(default_factory=dict)


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._index = _VectorIndex()
        self.audit = SqlAuditTable(self._tx, self._reading)
        self.conversations = SqlConversations(self._tx, self._reading)
        self.permissions = SqlPermissions(self._tx, self._reading)
        self.connectors = SqlConnectors(self._tx, self._reading)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        with self._tx() as conn:
            found = _schema_version(conn)
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(self.path, found, SCHEMA_VERSION)
            for number in range(found + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[number - 1](conn)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),))

    def schema_version(self) -> int:
        return int(self.meta().get("schema_version", "0"))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, check_same_thread=False, timeout=30, isolation_level=None, factory=_Connection
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self._write.close()
        self._read.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self._write.execute("BEGIN IMMEDIATE")
            try:
                yield self._write
            except BaseException:
                self._write.execute("ROLLBACK")
                raise
            self._write.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            yield self._read

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            return self._read.execute(sql, params).fetchall()

    # --- meta -------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query("SELECT key, value FROM meta")}

    def version(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key='version'")[0][0])

    def embed_model(self) -> tuple[str | None, int | None]:
        meta = self.meta()
        dims = meta.get("embed_dims")
        return meta.get("embed_model"), int(dims) if dims else None

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")

    def stats(self, collections: list[str] | None = None) -> dict[str, int]:
        """How many documents and chunks; with `collections`, only theirs (the dashboard of a user)."""
        where, params = _within(collections)
        docs = self._query(f"SELECT COUNT(*) FROM documents d WHERE {where}", params)[0][0]
        join = " JOIN documents d ON d.id = c.document_id" if collections is not None else ""
        chunks = self._query(f"SELECT COUNT(*) FROM chunks c{join} WHERE {where}", params)[0][0]
        return {"documents": int(docs), "chunks": int(chunks)}

    # --- documents --------------------------------------------------------------------------------------

    def content_hash(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_hash FROM documents WHERE id=?", (doc_id,))
        return rows[0][0] if rows else None

    @staticmethod
    def _room(conn: sqlite3.Connection, doc_id: str, adding: int, limit: int | None) -> None:
        if limit is None:
            return
        # The document's own old chunks are replaced, so they do not count against it.
        others = conn.execute(
            "SELECT (SELECT COUNT(*) FROM chunks) - (SELECT COUNT(*) FROM chunks WHERE document_id=?)",
            (doc_id,),
        ).fetchone()[0]
        if others + adding > limit:
            raise StoreFull(int(others), adding, limit)

    def check_room(self, doc_id: str, adding: int, limit: int) -> None:
        """Raise StoreFull if `adding` chunks for `doc_id` would pass `limit`."""
        with self._read_lock:
            self._room(self._read, doc_id, adding, limit)

    def upsert(self, doc: NewDocument, max_chunks: int | None = None) -> tuple[dict[str, Any], bool]:
        """Write a document with its chunks, FTS rows and vectors in one transaction; returns (doc, created).
        With `max_chunks`, raise StoreFull instead of passing it (checked inside the write transaction, so
        concurrent uploads cannot both squeeze in)."""
        blobs: list[bytes | None] = [None] * len(doc.chunks)
        with self._tx() as conn:
            self._room(conn, doc.id, len(doc.chunks), max_chunks)
            if doc.embeddings is not None:
                model, dims = _meta_embed(conn)
                vec_dims = len(doc.embeddings[0][0]) if doc.embeddings else 0
                if model is None or (model == doc.embed_model and dims == vec_dims):
                    blobs = [_blob(v) for v in doc.embeddings]
                    if model is None and vec_dims:
                        _set_embed_meta(conn, doc.embed_model or "unknown", vec_dims)
                # else: the store holds another model's vectors; leave these NULL until /admin/reembed.
            old = conn.execute("SELECT created_at, owner FROM documents WHERE id=?", (doc.id,)).fetchone()
            if old is not None and not may_write(old["owner"], doc.owner):
                raise NotOwner(doc.id)
            if old is not None:
                _delete_chunks(conn, doc.id)
                conn.execute("DELETE FROM documents WHERE id=?", (doc.id,))
            now = now_iso()
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM documents").fetchone()[0]
            conn.execute(
                "INSERT INTO documents (id, collection, title, url, metadata, text, content_hash, created_at,"
                " updated_at, seq, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    doc.id,
                    doc.collection,
                    doc.title,
                    doc.url,
                    to_json(doc.metadata),
                    doc.text,
                    doc.content_hash,
                    old["created_at"] if old else now,
                    now,
                    seq,
                    # An operator's rewrite keeps the owner, so the client can still manage its document.
                    (old["owner"] or LEGACY_OWNER) if old and doc.owner == OPERATOR else doc.owner,
                ),
            )
            for i, (text, blob) in enumerate(zip(doc.chunks, blobs, strict=True)):
                cur = conn.execute(
                    "INSERT INTO chunks (chunk_id, document_id, idx, text, embedding, section, page)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (f"{doc.id}:{i}", doc.id, i, text, blob, doc.section(i), doc.page(i)),
                )
                conn.execute(
                    "INSERT INTO chunks_fts (rowid, text, title) VALUES (?,?,?)",
                    (cur.lastrowid, text, heading(doc.title, doc.section(i)) or ""),
                )
            if doc.original is not None:  # the old one went with the old row (ON DELETE CASCADE)
                conn.execute("INSERT INTO originals VALUES (?,?,?)", (doc.id, *doc.original))
            self._bump(conn)
        got = self.get_document(doc.id)
        assert got is not None
        return got, old is None

    def owner_of(self, doc_id: str) -> tuple[bool, str | None]:
        """(the document exists, its owner)."""
        rows = self._query("SELECT owner FROM documents WHERE id=?", (doc_id,))
        return (True, rows[0]["owner"]) if rows else (False, None)

    def delete_document(self, doc_id: str, owner: str = OPERATOR) -> int | None:
        with self._tx() as conn:
            row = conn.execute("SELECT owner FROM documents WHERE id=?", (doc_id,)).fetchone()
            if row is None:
                return None
            if not may_write(row["owner"], owner):
                raise NotOwner(doc_id)
            n = _delete_chunks(conn, doc_id)
            conn.execute("DELETE FROM documents WHERE id=?", (doc_id,))
            self._bump(conn)
            return n

    def original(self, doc_id: str) -> tuple[str, bytes] | None:
        rows = self._query("SELECT content_type, data FROM originals WHERE document_id=?", (doc_id,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def original_type(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_type FROM originals WHERE document_id=?", (doc_id,))
        return rows[0][0] if rows else None

    def get_document(
        self, doc_id: str, with_text: bool = False, collections: list[str] | None = None
    ) -> dict[str, Any] | None:
        where, params = _within(collections)
        rows = self._query(
            f"SELECT d.*, {_EMBEDDED}, (SELECT COUNT(*) FROM chunks c WHERE c.document_id=d.id) AS n"
            f" FROM documents d WHERE d.id=? AND {where}",
            (doc_id, *params),
        )
        if not rows:
            return None
        doc = _doc(rows[0])
        if with_text:
            doc["text"] = rows[0]["text"]
            ids = self._query("SELECT chunk_id FROM chunks WHERE document_id=? ORDER BY idx", (doc_id,))
            doc["chunk_ids"] = [r[0] for r in ids]
        return doc

    def list_documents(
        self,
        collection: str | None,
        limit: int,
        offset: int,
        q: str | None = None,
        collections: list[str] | None = None,
    ) -> tuple[list[dict], int]:
        within, params = _within(collections)
        clauses = [within]
        if collection:
            clauses.append("d.collection=?")
            params.append(collection)
        if q:
            # SQLite's LIKE ignores ASCII case, as the page's search box expects.
            clauses.append("(d.title LIKE ? ESCAPE '\\' OR d.id LIKE ? ESCAPE '\\')")
            params += [like_pattern(q)] * 2
        where = f"WHERE {' AND '.join(clauses)}"
        rows = self._query(
            f"SELECT d.id, d.collection, d.title, d.url, d.metadata, d.created_at, d.updated_at, {_EMBEDDED},"
            " (SELECT COUNT(*) FROM chunks c WHERE c.document_id=d.id) AS n"
            f" FROM documents d {where} ORDER BY d.seq DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        total = self._query(f"SELECT COUNT(*) FROM documents d {where}", params)[0][0]
        return [_doc(r) for r in rows], int(total)

    def list_collections(self, collections: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = _within(collections)
        rows = self._query(
            f"SELECT collection, COUNT(*) FROM documents d WHERE {where} GROUP BY collection ORDER BY collection",
            params,
        )
        return [{"name": r[0], "documents": int(r[1])} for r in rows]

    # --- chunks -----------------------------------------------------------------------------------------

    _CHUNK_SELECT = (
        "SELECT c.rowid, c.chunk_id, c.document_id, c.idx, c.text, c.section, c.page, d.title, d.url, d.collection,"
        " d.metadata"
        " FROM chunks c JOIN documents d ON d.id = c.document_id"
    )

    def get_chunk(self, chunk_id: str, collections: list[str] | None = None) -> ChunkRow | None:
        where, params = _within(collections)
        rows = self._query(f"{self._CHUNK_SELECT} WHERE c.chunk_id=? AND {where}", (chunk_id, *params))
        return _chunk(rows[0]) if rows else None

    def chunks_by_rowid(
        self, rowids: Sequence[int], collections: list[str] | None = None
    ) -> dict[int, ChunkRow]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        where, params = _within(collections)
        rows = self._query(f"{self._CHUNK_SELECT} WHERE c.rowid IN ({marks}) AND {where}", [*rowids, *params])
        return {r["rowid"]: _chunk(r) for r in rows}

    def vectors_of(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each chunk's vectors as rows: the whole chunk's first, then its sentences' (when stored)."""
        if not chunk_ids:
            return {}
        _, dims = self.embed_model()
        marks = ",".join("?" * len(chunk_ids))
        rows = self._query(
            f"SELECT chunk_id, embedding FROM chunks WHERE chunk_id IN ({marks}) AND embedding IS NOT NULL",
            list(chunk_ids),
        )
        return {r[0]: _rows(r[1], dims) for r in rows}

    def chunks_of(self, doc_id: str) -> list[ChunkRow]:
        return [
            _chunk(r)
            for r in self._query(f"{self._CHUNK_SELECT} WHERE c.document_id=? ORDER BY c.idx", (doc_id,))
        ]

    def without_vectors(self, limit: int) -> list[str]:
        rows = self._query(
            "SELECT DISTINCT document_id FROM chunks WHERE embedding IS NULL LIMIT ?", (limit,)
        )
        return [r[0] for r in rows]

    def all_chunk_texts(self, after_rowid: int, limit: int) -> list[tuple[int, str]]:
        rows = self._query(
            "SELECT rowid, text FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT ?", (after_rowid, limit)
        )
        return [(r[0], r[1]) for r in rows]

    def set_vectors(self, model: str, vectors: dict[int, list[list[float]]], reset: bool) -> None:
        with self._tx() as conn:
            if reset:
                conn.execute("UPDATE chunks SET embedding = NULL")
                dims = len(next(iter(vectors.values()))[0]) if vectors else 0
                _set_embed_meta(conn, model, dims)
            conn.executemany(
                "UPDATE chunks SET embedding=? WHERE rowid=?", [(_blob(v), r) for r, v in vectors.items()]
            )
            self._bump(conn)

    # --- retrieval --------------------------------------------------------------------------------------

    def _scope(
        self, collection: str | None, filters: dict[str, Any], collections: list[str] | None = None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if collections is not None:
            within, params = _within(collections)
            clauses.append(within)
        if collection:
            clauses.append("d.collection = ?")
            params.append(collection)
        for key, value in filters.items():
            clauses.append("json_extract(d.metadata, ?) = ?")
            params += [f'$."{key}"', value]
        return (" AND ".join(clauses), params)

    def bm25(
        self,
        query: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[int]:
        match = fts_query(query)
        if match is None:
            return []
        scope, params = self._scope(collection, filters, collections)
        if not scope:
            # Without a join FTS5 ranks and limits inside the index, which is much cheaper.
            rows = self._query(
                "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, 1.0, 0.5) LIMIT ?",
                [match, limit],
            )
            return [r[0] for r in rows]
        rows = self._query(
            "SELECT f.rowid FROM chunks_fts f JOIN chunks c ON c.rowid = f.rowid"
            " JOIN documents d ON d.id = c.document_id"
            f" WHERE chunks_fts MATCH ? AND {scope} ORDER BY bm25(chunks_fts, 1.0, 0.5) LIMIT ?",
            [match, *params, limit],
        )
        return [r[0] for r in rows]

    def allowed_rowids(
        self, collection: str | None, filters: dict[str, Any], collections: list[str] | None = None
    ) -> np.ndarray | None:
        scope, params = self._scope(collection, filters, collections)
        if not scope:
            return None
        rows = self._query(
            f"SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {scope}", params
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _vector_index(self) -> _VectorIndex:
        version = self.version()
        with self._index_lock:
            if self._index.version != version:
                model, dims = self.embed_model()
                rows = self._query("SELECT rowid, embedding FROM chunks WHERE embedding IS NOT NULL")
                if rows:
                    blocks = [_rows(r[1], dims) for r in rows]
                    sizes = np.fromiter((len(b) for b in blocks), dtype=np.int64, count=len(blocks))
                    chunks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
                    index = _VectorIndex(version, model, np.repeat(chunks, sizes), np.vstack(blocks))
                    index.starts, index.chunks = starts, chunks
                else:
                    index = _VectorIndex(version, model)
                self._index = index
            return self._index

    def _mask(
        self,
        index: _VectorIndex,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None,
    ) -> np.ndarray | None:
        """Which rows of the matrix a collection/filter/permission scope allows; cached per corpus version
        (scopes repeat: a user's readable collections are the same on each of their questions)."""
        if not collection and not filters and collections is None:
            return None
        key = json.dumps([collection, filters, collections], sort_keys=True)
        with self._index_lock:
            cached = index.masks.get(key)
        if cached is None:
            allowed = self.allowed_rowids(collection, filters, collections)
            cached = (
                np.isin(index.rowids, allowed) if allowed is not None else np.ones(len(index.rowids), bool)
            )
            with self._index_lock:
                if len(index.masks) >= 64:
                    index.masks.clear()
                index.masks[key] = cached
        return cached

    def vector_search(
        self,
        vector: list[float],
        model: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[tuple[int, float]] | None:
        """Top chunks by cosine similarity; None when the stored vectors come from another model.

        A chunk scores the best of its vectors: the whole chunk's, or one sentence's. A question phrased in
        other words than its document still lands close to the one sentence that answers it, where the
        average over a whole chunk blurs it.
        """
        index = self._vector_index()
        if index.model is None or len(index.rowids) == 0:
            return []
        q = _normalise(np.asarray(vector, dtype=np.float32))
        if index.model != model or index.matrix.shape[1] != q.shape[0]:
            return None
        sims = index.matrix @ q
        mask = self._mask(index, collection, filters, collections)
        if mask is not None:
            sims = np.where(mask, sims, -np.inf)
        best = np.maximum.reduceat(sims, index.starts)
        k = min(limit, len(best))
        top = np.argpartition(-best, k - 1)[:k]
        top = top[np.argsort(-best[top])]
        return [(int(index.chunks[i]), float(best[i])) for i in top if np.isfinite(best[i])]


def _within(collections: list[str] | None) -> tuple[str, list[Any]]:
    """The permission filter on `documents d`: its collection is one of `collections` (None: no filter,
    an empty list: nothing). Uses the documents_collection index."""
    if collections is None:
        return "1", []
    if not collections:
        return "0", []
    return f"d.collection IN ({','.join('?' * len(collections))})", list(collections)


def _schema_version(conn: sqlite3.Connection) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is not None:
        return int(row[0])
    if "documents" not in tables:
        return 0
    # Written before migrations were numbered: version 1, or 2 once it had the owner column.
    columns = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
    return 2 if "owner" in columns else 1


def _rows(blob: bytes, dims: int | None) -> np.ndarray:
    flat = np.frombuffer(blob, dtype=np.float32)
    return flat.reshape(-1, dims or len(flat))


def _blob(vectors: list[list[float]]) -> bytes:
    """One chunk's vectors, each L2-normalised, as one float32 blob of shape (n, dims)."""
    return b"".join(_one_blob(v) for v in vectors)


def _one_blob(vector: list[float]) -> bytes:
    # Stored normalised, so cosine similarity is a dot product.
    return _normalise(np.asarray(vector, dtype=np.float32)).astype(np.float32).tobytes()


def _meta_embed(conn: sqlite3.Connection) -> tuple[str | None, int | None]:
    rows = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('embed_model','embed_dims')").fetchall()
    )
    return rows.get("embed_model"), int(rows["embed_dims"]) if "embed_dims" in rows else None


def _set_embed_meta(conn: sqlite3.Connection, model: str, dims: int) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embed_model', ?)", (model,))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embed_dims', ?)", (str(dims),))


def _delete_chunks(conn: sqlite3.Connection, doc_id: str) -> int:
    rowids = [r[0] for r in conn.execute("SELECT rowid FROM chunks WHERE document_id=?", (doc_id,))]
    conn.executemany("DELETE FROM chunks_fts WHERE rowid=?", [(r,) for r in rowids])
    conn.execute("DELETE FROM chunks WHERE document_id=?", (doc_id,))
    return len(rowids)


def _doc(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "collection": row["collection"],
        "title": row["title"],
        "url": row["url"],
        "metadata": json.loads(row["metadata"]),
        "chunks": int(row["n"]),
        "embedded": bool(row["embedded"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _chunk(row: sqlite3.Row) -> ChunkRow:
    return ChunkRow(
        rowid=row["rowid"],
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        index=row["idx"],
        text=row["text"],
        title=row["title"],
        url=row["url"],
        collection=row["collection"],
        metadata=json.loads(row["metadata"]),
        section=row["section"],
        page=row["page"],
    )

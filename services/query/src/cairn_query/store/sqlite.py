"""The embedded store (the default backend): SQLite (WAL) with documents, chunks, an FTS5 index (BM25) and
the vectors.

One file holds everything, so a document and all its chunks, index rows and vectors are written in one
transaction (nothing half-way) and survive restarts. Two connections: writes go through one, serialised by a
lock; reads use the other, and WAL lets them run while a write is in progress. All calls are blocking and are
run in a worker thread by the caller (`asyncio.to_thread`).

What both backends share (documents, chunks, meta, owners, limits) is in sql.py; this module keeps the
connections, the migrations, FTS5 and the vectors' BLOBs. Vector search is numpy brute force over a float32
matrix held in memory (sqlite_vectors.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cairn_query.store.audit import AUDIT_SCHEMA, SqlAuditTable
from cairn_query.store.base import ORIGINALS_SCHEMA, NewDocument, SchemaTooNew, fts_query, heading
from cairn_query.store.connectors import CONNECTORS_SCHEMA, SqlConnectors
from cairn_query.store.conversations import CONVERSATIONS_SCHEMA, SqlConversations
from cairn_query.store.permissions import PERMISSIONS_SCHEMA, SqlPermissions
from cairn_query.store.sql import Row, SqlStore
from cairn_query.store.sqlite_vectors import VectorIndex, as_blob, as_rows
from cairn_query.store.values import scrub, to_json

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
SCHEMA_VERSION = len(MIGRATIONS)


class _Connection(sqlite3.Connection):
    """Binds every parameter through `scrub`, as postgres.py's cursor does: one rule for text on both."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, scrub(parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return super().executemany(sql, (scrub(p) for p in parameters))


class SQLiteStore(SqlStore):
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        self._write = self._connect()
        self._read = self._connect()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # The chunks each scope allows, per corpus version (scopes repeat: a user's readable collections are
        # the same on each of their questions); read by keyword and vector search alike.
        self._scopes: dict[str, tuple[int, frozenset[int]]] = {}
        self._vectors = VectorIndex(self._load_vectors, self.version, self.allowed_rowids)
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

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._read_lock:
            return self._read.execute(sql, params).fetchall()

    # --- the dialect's SQL ------------------------------------------------------------------------------

    # A chunk without vectors: the gateway could not embed it, or the store holds another model's.
    NO_VECTORS = "c.embedding IS NULL"

    def _metadata_param(self, metadata: dict[str, Any]) -> Any:
        return to_json(metadata)

    def _filter(self, key: str, value: Any) -> tuple[str, list[Any]]:
        return "json_extract(d.metadata, ?) = ?", [f'$."{key}"', value]

    def _delete_chunks(self, conn: sqlite3.Connection, doc_id: str) -> int:
        rowids = [r[0] for r in conn.execute("SELECT rowid FROM chunks WHERE document_id=?", (doc_id,))]
        conn.executemany("DELETE FROM chunks_fts WHERE rowid=?", [(r,) for r in rowids])
        conn.execute("DELETE FROM chunks WHERE document_id=?", (doc_id,))
        return len(rowids)

    def _insert_chunks(self, conn: sqlite3.Connection, docs: Sequence[tuple[NewDocument, bool]]) -> None:
        """Rowids handed out here (inside the write transaction, so no one else takes them), so that chunks
        and their FTS rows go in with two executemany calls for the whole batch."""
        rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM chunks").fetchone()[0]
        chunks: list[tuple[Any, ...]] = []
        fts: list[tuple[Any, ...]] = []
        for doc, keep in docs:
            blobs = [as_blob(v) for v in doc.embeddings] if keep and doc.embeddings is not None else None
            for i, text in enumerate(doc.chunks):
                rowid += 1
                blob = blobs[i] if blobs else None
                chunks.append((rowid, f"{doc.id}:{i}", doc.id, i, text, blob, doc.section(i), doc.page(i)))
                fts.append((rowid, text, heading(doc.title, doc.section(i)) or ""))
        conn.executemany(
            "INSERT INTO chunks (rowid, chunk_id, document_id, idx, text, embedding, section, page)"
            " VALUES (?,?,?,?,?,?,?,?)",
            chunks,
        )
        conn.executemany("INSERT INTO chunks_fts (rowid, text, title) VALUES (?,?,?)", fts)

    def _clear_vectors(self, conn: sqlite3.Connection, rowids: Sequence[int] | None) -> None:
        if rowids is None:
            conn.execute("UPDATE chunks SET embedding = NULL")
        # else: the vectors written next replace these chunks' blobs

    def _write_vectors(self, conn: sqlite3.Connection, vectors: dict[int, list[list[float]]]) -> None:
        conn.executemany(
            "UPDATE chunks SET embedding=? WHERE rowid=?", [(as_blob(v), r) for r, v in vectors.items()]
        )

    def vectors_of(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each chunk's vectors as rows: the whole chunk's first, then its sentences' (when stored)."""
        if not chunk_ids:
            return {}
        _, dims = self.embed_model()
        marks = ",".join("?" * len(chunk_ids))
        rows = self._rows(
            f"SELECT chunk_id, embedding FROM chunks WHERE chunk_id IN ({marks}) AND embedding IS NOT NULL",
            list(chunk_ids),
        )
        return {r[0]: as_rows(r[1], dims) for r in rows}

    # --- retrieval --------------------------------------------------------------------------------------

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
        ranked = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, 1.0, 0.5)"
        allowed = self._scope_rowids(collection, filters, collections)
        if allowed is None:
            return [r[0] for r in self._rows(ranked + " LIMIT ?", [match, limit])]
        # Ranked inside the index as when unscoped, then kept when the scope allows them: a join tested every
        # match against its document, 2.7× the unscoped time at 100k chunks (docs/benchmarks.md).
        found: list[int] = []
        with self._read_lock:
            for (rowid,) in self._read.execute(ranked, [match]):
                if rowid in allowed:
                    found.append(rowid)
                    if len(found) == limit:
                        break
        return found

    def allowed_rowids(
        self, collection: str | None, filters: dict[str, Any], collections: list[str] | None = None
    ) -> np.ndarray | None:
        allowed = self._scope_rowids(collection, filters, collections)
        return None if allowed is None else np.fromiter(allowed, dtype=np.int64, count=len(allowed))

    def _scope_rowids(
        self, collection: str | None, filters: dict[str, Any], collections: list[str] | None
    ) -> frozenset[int] | None:
        """The rowids of the chunks a scope allows (None: unscoped), cached for the corpus version."""
        scope, params = self._scope(collection, filters, collections)
        if not scope:
            return None
        key, version = json.dumps([collection, filters, collections], sort_keys=True), self.version()
        cached = self._scopes.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        rows = self._rows(
            f"SELECT c.rowid FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {scope}", params
        )
        allowed = frozenset(r[0] for r in rows)
        if len(self._scopes) >= 64:
            self._scopes.clear()
        self._scopes[key] = (version, allowed)
        return allowed

    def _load_vectors(self) -> tuple[str | None, int | None, list[tuple[int, bytes]]]:
        model, dims = self.embed_model()
        rows = self._rows("SELECT rowid, embedding FROM chunks WHERE embedding IS NOT NULL")
        return model, dims, [(r[0], r[1]) for r in rows]

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
        return self._vectors.search(vector, model, limit, collection, filters, collections)


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

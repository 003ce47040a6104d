"""The PostgreSQL backend: documents and chunks in tables, a `tsvector` GIN index for keywords and pgvector's
HNSW index for the vectors, so several QS replicas share one corpus and none holds it in memory.

Same behaviour as sqlite.py, in other words:
- keywords: each chunk's text (weight A) and its document's title (weight B) in a `tsvector` of the `cairn`
  text search configuration: English stemming with no stopword list, because the query drops the same
  STOPWORDS as on SQLite (base.query_terms) and the index must still find "not" or "all" when asked. Ranked
  by ts_rank with the title at half weight, as FTS5's bm25(1.0, 0.5). The GIN index has no pending list
  (fastupdate off): rows land in the index at once, so a search after a burst of uploads does not scan an
  unsorted list (11 vs 2.5 ms for the match alone, measured).
- vectors: one row per vector (the chunk's, then each sentence's) with the chunk it belongs to. Unscoped
  searches walk the HNSW index (cosine) for a few times `limit` nearest vectors and keep each chunk's best;
  a collection or metadata filter is searched exactly over its rows instead, since pgvector (0.6) filters
  after the index walk and a narrow scope would come back short.
- writes: one transaction each, serialised by a row lock on the corpus version (the chunk limit and `seq`
  are read inside it, as SQLite's BEGIN IMMEDIATE does).
The HNSW index needs a fixed dimension, so the vector column gets it when the first vectors (or a reembed
with another model) set the store's model.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import ConnectionPool

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
    heading,
    like_pattern,
    may_write,
    normalise,
    now_iso,
    query_terms,
    scrub,
    to_json,
)
from cairn_query.store.connectors import CONNECTORS_SCHEMA, SqlConnectors
from cairn_query.store.conversations import CONVERSATIONS_SCHEMA, SqlConversations
from cairn_query.store.permissions import PERMISSIONS_SCHEMA, SqlPermissions

_SCHEMA_V1 = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'cairn_stem') THEN
        CREATE TEXT SEARCH DICTIONARY cairn_stem (TEMPLATE = snowball, Language = english);
        CREATE TEXT SEARCH CONFIGURATION cairn (COPY = english);
        ALTER TEXT SEARCH CONFIGURATION cairn ALTER MAPPING
            FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH cairn_stem;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    title TEXT,
    url TEXT,
    metadata JSONB NOT NULL DEFAULT '{}',
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS documents_collection ON documents (collection, seq);
CREATE INDEX IF NOT EXISTS documents_seq ON documents (seq);
CREATE TABLE IF NOT EXISTS chunks (
    rowid BIGSERIAL PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv) WITH (fastupdate = off);
CREATE TABLE IF NOT EXISTS vectors (
    chunk_rowid BIGINT NOT NULL REFERENCES chunks (rowid) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (chunk_rowid, n)
);
INSERT INTO meta VALUES ('version', '0') ON CONFLICT DO NOTHING;
"""

MIGRATIONS = [
    _SCHEMA_V1,
    AUDIT_SCHEMA.format(id_type="BIGSERIAL"),
    CONVERSATIONS_SCHEMA.format(id_type="BIGSERIAL"),
    # Each chunk's section path (the headings above it); chunks stored before have none.
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS section TEXT",
    CONNECTORS_SCHEMA,  # connector sources and what each synced (connectors.py)
    # Collection permissions and API keys (permissions.py).
    PERMISSIONS_SCHEMA,
    # Each chunk's page or slide number (PDF, PPTX, scans); chunks stored before have none.
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS page INTEGER",
    # The uploaded file behind a document (PDFs), so a citation can open it at its page.
    ORIGINALS_SCHEMA.format(blob="BYTEA"),
]
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATE_LOCK = 7_305_512_201  # pg_advisory_xact_lock key: replicas starting together migrate one at a time
_AUDIT_LOCK = 7_305_512_202  # appends to the audit chain, one at a time across replicas
_TSV = "setweight(to_tsvector('cairn', {text}), 'A') || setweight(to_tsvector('cairn', {title}), 'B')"
_RANK_WEIGHTS = "'{0, 0, 0.5, 1}'::float4[]"  # D, C, B (title), A (text)
# ts_rank (term frequency, like BM25's tf) rather than ts_rank_cd (cover density): every matching row is ranked,
# and ts_rank costs half as much a row (16 vs 7.5 ms for 2,900 matching rows, docs/benchmarks.md).
# An unscoped search asks the index for this many vectors per chunk wanted: a chunk's sentences sit close
# together, so several of the nearest vectors are often one chunk's.
_OVERFETCH = 4
# As on SQLite: a document is `embedded` when none of its chunks lacks vectors.
_NO_VECTORS = "NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_rowid = c.rowid)"
_EMBEDDED = f"NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id=d.id AND {_NO_VECTORS}) AS embedded"


class _Cursor(psycopg.Cursor[Any]):
    """Binds every parameter through `scrub`, as sqlite.py's connection does: one rule for text on both (JSON
    values go through `to_json`, set on each connection)."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Self:
        return super().execute(query, scrub(params), **kw)

    def executemany(self, query: Any, params_seq: Iterable[Any], **kw: Any) -> None:
        super().executemany(query, (scrub(p) for p in params_seq), **kw)


class PostgresStore:
    def __init__(self, url: str, pool_min: int = 1, pool_max: int = 8, ef_search: int = 200) -> None:
        self.url = url
        self.ef_search = ef_search
        with psycopg.connect(url, autocommit=True) as conn:
            self._migrate(conn)
            info = TypeInfo.fetch(conn, "vector")
            assert info is not None, "CREATE EXTENSION vector did not run"
            self._vector_oid = info.oid
        self._pool = ConnectionPool(
            url,
            min_size=pool_min,
            max_size=pool_max,
            kwargs={"autocommit": True, "cursor_factory": _Cursor},
            configure=self._configure,
            # One cheap round trip per checkout, so a database restart costs no failed request.
            check=ConnectionPool.check_connection,
            open=False,
        )
        self._pool.open(wait=True, timeout=30)
        self.audit = SqlAuditTable(self._audit_tx, self._pool.connection, placeholder="%s")
        self.conversations = SqlConversations(self._plain_tx, self._pool.connection, placeholder="%s")
        self.permissions = SqlPermissions(self._tx, self._pool.connection, placeholder="%s")
        self.connectors = SqlConnectors(self._plain_tx, self._pool.connection, placeholder="%s")

    def _migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            found = 0
            if conn.execute("SELECT to_regclass('meta')").fetchone() != (None,):
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(_redact(self.url), found, SCHEMA_VERSION)
            for number in range(found + 1, SCHEMA_VERSION + 1):
                conn.execute(MIGRATIONS[number - 1])
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(number),),
                )

    def _configure(self, conn: psycopg.Connection) -> None:
        oid = self._vector_oid

        class VectorDumper(Dumper):
            format = Format.BINARY

            def dump(self, obj: Any) -> bytes:
                a = np.asarray(obj, dtype=">f4")
                return struct.pack(">HH", a.shape[0], 0) + a.tobytes()

        VectorDumper.oid = oid

        class VectorLoader(Loader):
            format = Format.BINARY

            def load(self, data: Any) -> np.ndarray:
                dims = struct.unpack_from(">H", data)[0]
                return np.frombuffer(bytes(data), dtype=">f4", count=dims, offset=4).astype(np.float32)

        set_json_dumps(to_json, conn)
        conn.adapters.register_dumper(np.ndarray, VectorDumper)
        conn.adapters.register_loader(oid, VectorLoader)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """A write transaction, holding the corpus version's row lock until it commits."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT value FROM meta WHERE key='version' FOR UPDATE")
            yield conn

    @contextmanager
    def _plain_tx(self) -> Iterator[psycopg.Connection]:
        """A write transaction that needs no lock beyond its rows' (conversations, ratings)."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def _audit_tx(self) -> Iterator[psycopg.Connection]:
        """A write transaction on the audit chain: its own lock, so answers do not wait for an ingest."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
            yield conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()

    # --- meta -------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query("SELECT key, value FROM meta")}

    def schema_version(self) -> int:
        return int(self.meta().get("schema_version", "0"))

    def version(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key='version'")[0]["value"])

    def embed_model(self) -> tuple[str | None, int | None]:
        meta = self.meta()
        dims = meta.get("embed_dims")
        return meta.get("embed_model"), int(dims) if dims else None

    @staticmethod
    def _bump(conn: psycopg.Connection) -> None:
        conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key='version'")

    def stats(self, collections: list[str] | None = None) -> dict[str, int]:
        """How many documents and chunks; with `collections`, only theirs (the dashboard of a user)."""
        where, params = _within(collections)
        join = " JOIN documents d ON d.id = c.document_id" if collections is not None else ""
        row = self._query(
            f"SELECT (SELECT COUNT(*) FROM documents d WHERE {where}) AS documents,"
            f" (SELECT COUNT(*) FROM chunks c{join} WHERE {where}) AS chunks",
            [*params, *params],
        )[0]
        return {"documents": int(row["documents"]), "chunks": int(row["chunks"])}

    # --- documents --------------------------------------------------------------------------------------

    def content_hash(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_hash FROM documents WHERE id=%s", (doc_id,))
        return rows[0]["content_hash"] if rows else None

    @staticmethod
    def _room(conn: psycopg.Connection, doc_id: str, adding: int, limit: int | None) -> None:
        if limit is None:
            return
        # The document's own old chunks are replaced, so they do not count against it.
        row = conn.execute(
            "SELECT (SELECT COUNT(*) FROM chunks) - (SELECT COUNT(*) FROM chunks WHERE document_id=%s)",
            (doc_id,),
        ).fetchone()
        others = int(row[0]) if row else 0
        if others + adding > limit:
            raise StoreFull(others, adding, limit)

    def check_room(self, doc_id: str, adding: int, limit: int) -> None:
        """Raise StoreFull if `adding` chunks for `doc_id` would pass `limit`."""
        with self._pool.connection() as conn:
            self._room(conn, doc_id, adding, limit)

    def upsert(self, doc: NewDocument, max_chunks: int | None = None) -> tuple[dict[str, Any], bool]:
        """Write a document with its chunks, keyword rows and vectors in one transaction; returns
        (doc, created). With `max_chunks`, raise StoreFull instead of passing it."""
        with self._tx() as conn:
            self._room(conn, doc.id, len(doc.chunks), max_chunks)
            keep_vectors = False
            if doc.embeddings is not None:
                model, dims = _meta_embed(conn)
                vec_dims = len(doc.embeddings[0][0]) if doc.embeddings else 0
                keep_vectors = model is None or (model == doc.embed_model and dims == vec_dims)
                if model is None and vec_dims:
                    _set_embed_meta(conn, doc.embed_model or "unknown", vec_dims)
                    _index_vectors(conn, vec_dims)
                # else: the store holds another model's vectors; none are kept until /admin/reembed.
            old = conn.execute("SELECT created_at, owner FROM documents WHERE id=%s", (doc.id,)).fetchone()
            if old is not None and not may_write(old[1], doc.owner):
                raise NotOwner(doc.id)
            if old is not None:
                conn.execute("DELETE FROM documents WHERE id=%s", (doc.id,))  # cascades to chunks, vectors
            now = now_iso()
            conn.execute(
                "INSERT INTO documents (id, collection, title, url, metadata, text, content_hash, created_at,"
                " updated_at, seq, owner) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " COALESCE(MAX(seq), 0) + 1, %s FROM documents",
                (
                    doc.id,
                    doc.collection,
                    doc.title,
                    doc.url,
                    Jsonb(doc.metadata),
                    doc.text,
                    doc.content_hash,
                    old[0] if old else now,
                    now,
                    # An operator's rewrite keeps the owner, so the client can still manage its document.
                    (old[1] or LEGACY_OWNER) if old and doc.owner == OPERATOR else doc.owner,
                ),
            )
            rowids = _insert_chunks(conn, doc)
            if keep_vectors and doc.embeddings is not None:
                _copy_vectors(conn, self._vector_oid, dict(zip(rowids, doc.embeddings, strict=True)))
            if doc.original is not None:  # the old one went with the old row (ON DELETE CASCADE)
                conn.execute("INSERT INTO originals VALUES (%s, %s, %s)", (doc.id, *doc.original))
            self._bump(conn)
        got = self.get_document(doc.id)
        assert got is not None
        return got, old is None

    def owner_of(self, doc_id: str) -> tuple[bool, str | None]:
        """(the document exists, its owner)."""
        rows = self._query("SELECT owner FROM documents WHERE id=%s", (doc_id,))
        return (True, rows[0]["owner"]) if rows else (False, None)

    def delete_document(self, doc_id: str, owner: str = OPERATOR) -> int | None:
        with self._tx() as conn:
            row = conn.execute("SELECT owner FROM documents WHERE id=%s", (doc_id,)).fetchone()
            if row is None:
                return None
            if not may_write(row[0], owner):
                raise NotOwner(doc_id)
            count = conn.execute("SELECT COUNT(*) FROM chunks WHERE document_id=%s", (doc_id,)).fetchone()
            conn.execute("DELETE FROM documents WHERE id=%s", (doc_id,))
            self._bump(conn)
            return int(count[0]) if count else 0

    def original(self, doc_id: str) -> tuple[str, bytes] | None:
        rows = self._query("SELECT content_type, data FROM originals WHERE document_id=%s", (doc_id,))
        return (rows[0]["content_type"], bytes(rows[0]["data"])) if rows else None

    def original_type(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_type FROM originals WHERE document_id=%s", (doc_id,))
        return rows[0]["content_type"] if rows else None

    def get_document(
        self, doc_id: str, with_text: bool = False, collections: list[str] | None = None
    ) -> dict[str, Any] | None:
        where, params = _within(collections)
        rows = self._query(
            f"SELECT d.*, {_EMBEDDED}, (SELECT COUNT(*) FROM chunks c WHERE c.document_id=d.id) AS n"
            f" FROM documents d WHERE d.id=%s AND {where}",
            (doc_id, *params),
        )
        if not rows:
            return None
        doc = _doc(rows[0])
        if with_text:
            doc["text"] = rows[0]["text"]
            ids = self._query("SELECT chunk_id FROM chunks WHERE document_id=%s ORDER BY idx", (doc_id,))
            doc["chunk_ids"] = [r["chunk_id"] for r in ids]
        return doc

    def list_documents(
        self,
        collection: str | None,
        limit: int,
        offset: int,
        q: str | None = None,
        collections: list[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        within, params = _within(collections)
        clauses = [within]
        if collection:
            clauses.append("d.collection=%s")
            params.append(collection)
        if q:
            clauses.append("(d.title ILIKE %s OR d.id ILIKE %s)")  # ILIKE: case ignored, as on SQLite
            params += [like_pattern(q)] * 2
        where = f"WHERE {' AND '.join(clauses)}"
        rows = self._query(
            f"SELECT d.id, d.collection, d.title, d.url, d.metadata, d.created_at, d.updated_at, {_EMBEDDED},"
            " (SELECT COUNT(*) FROM chunks c WHERE c.document_id=d.id) AS n"
            f" FROM documents d {where} ORDER BY d.seq DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        total = self._query(f"SELECT COUNT(*) AS n FROM documents d {where}", params)[0]["n"]
        return [_doc(r) for r in rows], int(total)

    def list_collections(self, collections: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = _within(collections)
        rows = self._query(
            f"SELECT collection, COUNT(*) AS n FROM documents d WHERE {where}"
            " GROUP BY collection ORDER BY collection",
            params,
        )
        return [{"name": r["collection"], "documents": int(r["n"])} for r in rows]

    # --- chunks -----------------------------------------------------------------------------------------

    _CHUNK_SELECT = (
        "SELECT c.rowid, c.chunk_id, c.document_id, c.idx, c.text, c.section, c.page, d.title, d.url, d.collection,"
        " d.metadata"
        " FROM chunks c JOIN documents d ON d.id = c.document_id"
    )

    def get_chunk(self, chunk_id: str, collections: list[str] | None = None) -> ChunkRow | None:
        where, params = _within(collections)
        rows = self._query(f"{self._CHUNK_SELECT} WHERE c.chunk_id=%s AND {where}", (chunk_id, *params))
        return _chunk(rows[0]) if rows else None

    def chunks_by_rowid(
        self, rowids: Sequence[int], collections: list[str] | None = None
    ) -> dict[int, ChunkRow]:
        if not rowids:
            return {}
        where, params = _within(collections)
        rows = self._query(
            f"{self._CHUNK_SELECT} WHERE c.rowid = ANY(%s) AND {where}", (list(rowids), *params)
        )
        return {r["rowid"]: _chunk(r) for r in rows}

    def vectors_of(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each chunk's vectors as rows: the whole chunk's first, then its sentences' (when stored)."""
        if not chunk_ids:
            return {}
        with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            rows = cur.execute(
                "SELECT c.chunk_id, v.embedding FROM vectors v JOIN chunks c ON c.rowid = v.chunk_rowid"
                " WHERE c.chunk_id = ANY(%s) ORDER BY c.chunk_id, v.n",
                (list(chunk_ids),),
            ).fetchall()
        grouped: dict[str, list[np.ndarray]] = {}
        for chunk_id, vector in rows:
            grouped.setdefault(chunk_id, []).append(vector)
        return {k: np.vstack(v) for k, v in grouped.items()}

    def chunks_of(self, doc_id: str) -> list[ChunkRow]:
        rows = self._query(f"{self._CHUNK_SELECT} WHERE c.document_id=%s ORDER BY c.idx", (doc_id,))
        return [_chunk(r) for r in rows]

    def without_vectors(self, limit: int) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT c.document_id FROM chunks c WHERE {_NO_VECTORS} LIMIT %s", (limit,)
        )
        return [r["document_id"] for r in rows]

    def all_chunk_texts(self, after_rowid: int, limit: int) -> list[tuple[int, str]]:
        rows = self._query(
            "SELECT rowid, text FROM chunks WHERE rowid > %s ORDER BY rowid LIMIT %s", (after_rowid, limit)
        )
        return [(r["rowid"], r["text"]) for r in rows]

    def set_vectors(self, model: str, vectors: dict[int, list[list[float]]], reset: bool) -> None:
        with self._tx() as conn:
            if reset:
                conn.execute("DELETE FROM vectors")
                conn.execute("DROP INDEX IF EXISTS vectors_hnsw")
                conn.execute("ALTER TABLE vectors ALTER COLUMN embedding TYPE vector")  # any dimension
                dims = len(next(iter(vectors.values()))[0]) if vectors else 0
                _set_embed_meta(conn, model, dims)
            else:
                conn.execute("DELETE FROM vectors WHERE chunk_rowid = ANY(%s)", (list(vectors),))
            _copy_vectors(conn, self._vector_oid, vectors)
            if reset and dims:
                _index_vectors(conn, dims)  # built after the rows are in: faster than row by row
            self._bump(conn)

    # --- retrieval --------------------------------------------------------------------------------------

    @staticmethod
    def _scope(
        collection: str | None, filters: dict[str, Any], collections: list[str] | None = None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if collections is not None:
            within, params = _within(collections)
            clauses.append(within)
        if collection:
            clauses.append("d.collection = %s")
            params.append(collection)
        for key, value in filters.items():
            if value is None:  # as on SQLite, where json_extract(...) = NULL is never true
                clauses.append("FALSE")
                continue
            clauses.append("d.metadata -> %s = %s")
            params += [key, Jsonb(value)]
        return (" AND ".join(clauses), params)

    def bm25(
        self,
        query: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[int]:
        terms = query_terms(query)
        if not terms:
            return []
        tsquery = " | ".join(f"'{t}'" for t in terms)  # \w+ words: no quote or operator can be in one
        scope, params = self._scope(collection, filters, collections)
        join = " JOIN documents d ON d.id = c.document_id" if scope else ""
        rows = self._query(
            f"SELECT c.rowid FROM chunks c{join}, to_tsquery('cairn', %s) q"
            f" WHERE c.tsv @@ q {'AND ' + scope if scope else ''}"
            f" ORDER BY ts_rank({_RANK_WEIGHTS}, c.tsv, q, 1) DESC, c.rowid LIMIT %s",
            [tsquery, *params, limit],
        )
        return [r["rowid"] for r in rows]

    def vector_search(
        self,
        vector: list[float],
        model: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[tuple[int, float]] | None:
        """Top chunks by cosine similarity, each scoring its best vector; None when the stored vectors come
        from another model."""
        stored_model, dims = self.embed_model()
        if stored_model is None:
            return []
        q = normalise(np.asarray(vector, dtype=np.float32))
        if stored_model != model or dims != q.shape[0]:
            # As on SQLite: a store with no vectors left has nothing to mismatch.
            empty = self._query("SELECT NOT EXISTS (SELECT 1 FROM vectors) AS empty")[0]["empty"]
            return [] if empty else None
        scope, params = self._scope(collection, filters, collections)
        with self._pool.connection() as conn:
            if scope:
                rows = conn.execute(
                    "SELECT v.chunk_rowid, MIN(v.embedding <=> %b) AS dist FROM vectors v"
                    " JOIN chunks c ON c.rowid = v.chunk_rowid JOIN documents d ON d.id = c.document_id"
                    f" WHERE {scope} GROUP BY v.chunk_rowid ORDER BY dist, v.chunk_rowid LIMIT %s",
                    [q, *params, limit],
                ).fetchall()
                return [(int(r), 1.0 - float(d)) for r, d in rows]
            fetch = limit * _OVERFETCH
            with conn.transaction():
                # HNSW returns at most ef_search rows, so the candidate list is at least what is fetched.
                conn.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true)", (str(max(self.ef_search, fetch)),)
                )
                rows = conn.execute(
                    "SELECT chunk_rowid, embedding <=> %b AS dist FROM vectors ORDER BY embedding <=> %b LIMIT %s",
                    (q, q, fetch),
                ).fetchall()
        best: dict[int, float] = {}
        for rowid, dist in rows:
            if rowid not in best:  # rows come nearest first, so a chunk's first row is its best
                best[int(rowid)] = 1.0 - float(dist)
        return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def _within(collections: list[str] | None) -> tuple[str, list[Any]]:
    """The permission filter on `documents d`, as on SQLite: None no filter, an empty list nothing."""
    if collections is None:
        return "TRUE", []
    return "d.collection = ANY(%s)", [list(collections)]


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return psycopg.conninfo.make_conninfo(url, password="***") if "@" in url else url


def _meta_embed(conn: psycopg.Connection) -> tuple[str | None, int | None]:
    rows: dict[str, str] = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('embed_model','embed_dims')").fetchall()
    )
    return rows.get("embed_model"), int(rows["embed_dims"]) if "embed_dims" in rows else None


def _set_embed_meta(conn: psycopg.Connection, model: str, dims: int) -> None:
    conn.execute(
        "INSERT INTO meta VALUES ('embed_model', %s), ('embed_dims', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (model, str(dims)),
    )


def _index_vectors(conn: psycopg.Connection, dims: int) -> None:
    """Fix the vector column's dimension (HNSW needs one) and build the index over what is there."""
    conn.execute("DROP INDEX IF EXISTS vectors_hnsw")
    conn.execute(f"ALTER TABLE vectors ALTER COLUMN embedding TYPE vector({int(dims)})")
    conn.execute("CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding vector_cosine_ops)")


def _insert_chunks(conn: psycopg.Connection, doc: NewDocument) -> list[int]:
    """All of a document's chunks in one statement; their rowids in chunk order."""
    sections = [doc.section(i) for i in range(len(doc.chunks))]
    rows = conn.execute(
        "INSERT INTO chunks (chunk_id, document_id, idx, text, section, page, tsv)"
        f" SELECT %s || ':' || (i - 1), %s, i - 1, t, s, p, {_TSV.format(text='t', title='h')}"
        " FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[]) WITH ORDINALITY AS u(t, s, p, h, i)"
        " ORDER BY i RETURNING rowid, idx",
        (
            doc.id,
            doc.id,
            list(doc.chunks),
            [s or None for s in sections],
            [doc.page(i) for i in range(len(doc.chunks))],
            [heading(doc.title, s) or "" for s in sections],
        ),
    ).fetchall()
    return [r for r, _ in sorted(rows, key=lambda r: r[1])]


def _copy_vectors(conn: psycopg.Connection, oid: int, vectors: dict[int, list[list[float]]]) -> None:
    """Every vector of these chunks (rowid -> its vectors), normalised, by binary COPY."""
    with conn.cursor().copy("COPY vectors (chunk_rowid, n, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int4", oid])
        for rowid, rows in vectors.items():
            for n, v in enumerate(rows):
                copy.write_row((rowid, n, normalise(np.asarray(v, dtype=np.float32))))


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "collection": row["collection"],
        "title": row["title"],
        "url": row["url"],
        "metadata": row["metadata"],
        "chunks": int(row["n"]),
        "embedded": bool(row["embedded"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _chunk(row: dict[str, Any]) -> ChunkRow:
    return ChunkRow(
        rowid=row["rowid"],
        chunk_id=row["chunk_id"],
        document_id=row["document_id"],
        index=row["idx"],
        text=row["text"],
        title=row["title"],
        url=row["url"],
        collection=row["collection"],
        metadata=row["metadata"],
        section=row["section"],
        page=row["page"],
    )

"""The PostgreSQL backend: documents and chunks in tables, a `tsvector` GIN index for keywords and pgvector's
HNSW index for the vectors, so several QS replicas share one corpus and none holds it in memory.

What both backends share is in sql.py; this module keeps the pool and transactions (and runs the migrations
of pg_schema.py), the keyword index and the vectors. Same behaviour as sqlite.py, in other words:
- keywords: each chunk's text (weight A) and its document's title (weight B) in a `tsvector` of the `cairn`
  text search configuration: English stemming with no stopword list, because the query drops the same
  STOPWORDS as on SQLite (base.query_terms) and the index must still find "not" or "all" when asked. Ranked
  by ts_rank with the title at half weight, as FTS5's bm25(1.0, 0.5), over a bounded candidate set
  (pg_search.py). The GIN index has no pending list (fastupdate off): rows land in the index at once, so a
  search after a burst of uploads does not scan an unsorted list (11 vs 2.5 ms for the match alone, measured).
- vectors: one row per vector (the chunk's, then each sentence's) with the chunk it belongs to, behind an HNSW
  index (cosine); how unscoped and scoped searches use it is in pg_search.py.
- writes: one transaction each; chunks go in with one INSERT … unnest per batch, vectors by binary COPY. Writers
  are serialised by a row lock on the corpus version, taken late (`_bump`), so that two uploads index their
  chunks and vectors in parallel; the chunk limit and `seq` are settled after it, as SQLite's BEGIN IMMEDIATE
  settles them before.
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

from cairn_query.store import pg_indexes, pg_search
from cairn_query.store.audit import SqlAuditTable
from cairn_query.store.base import NewDocument, SchemaTooNew, heading, query_terms
from cairn_query.store.connectors import SqlConnectors
from cairn_query.store.conversations import SqlConversations
from cairn_query.store.permissions import SqlPermissions
from cairn_query.store.pg_schema import MIGRATIONS, SCHEMA_VERSION
from cairn_query.store.sql import Row, SqlStore
from cairn_query.store.values import normalise, scrub, to_json

_MIGRATE_LOCK = 7_305_512_201  # pg_advisory_xact_lock key: replicas starting together migrate one at a time
_AUDIT_LOCK = 7_305_512_202  # appends to the audit chain, one at a time across replicas
_TSV = "setweight(to_tsvector('cairn', {text}), 'A') || setweight(to_tsvector('cairn', {title}), 'B')"


class _Cursor(psycopg.Cursor[Any]):
    """Binds every parameter through `scrub`, as sqlite.py's connection does: one rule for text on both (JSON
    values go through `to_json`, set on each connection)."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Self:
        return super().execute(query, scrub(params), **kw)

    def executemany(self, query: Any, params_seq: Iterable[Any], **kw: Any) -> None:
        super().executemany(query, (scrub(p) for p in params_seq), **kw)


class PostgresStore(SqlStore):
    PLACEHOLDER = "%s"
    ILIKE = "ILIKE"
    NO_VECTORS = "NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_rowid = c.rowid)"

    def __init__(
        self,
        url: str,
        pool_min: int = 1,
        pool_max: int = 8,
        ef_search: int = 200,
        fts_candidates: int = 500,
        exact_max: int = 20_000,
        scope_index_interval: float = 30.0,
    ) -> None:
        self.url = url
        self.ef_search = ef_search
        self.fts_candidates = fts_candidates  # pg_search.bm25
        self.exact_max = exact_max  # pg_search.nearest_in, pg_indexes
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
        self.scope_indexer = pg_indexes.ScopeIndexer(self._pool, exact_max, scope_index_interval)

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
        self.scope_indexer.close()
        self._pool.close()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """A write transaction of the corpus. Writers are serialised by the row lock on the corpus version,
        which `_bump` (or `_serialise`) takes late, after the costly writes, so that two uploads index their
        chunks and vectors at the same time."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn
        self.scope_indexer.poke()  # a collection may have grown past the size that earns it an index

    def _serialise(self, conn: psycopg.Connection) -> None:
        conn.execute("SELECT value FROM meta WHERE key='version' FOR UPDATE")

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

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()

    # --- the dialect's SQL ------------------------------------------------------------------------------

    def _metadata_param(self, metadata: dict[str, Any]) -> Any:
        return Jsonb(metadata)

    def _filter(self, key: str, value: Any) -> tuple[str, list[Any]]:
        if value is None:  # as on SQLite, where json_extract(...) = NULL is never true
            return "FALSE", []
        return "d.metadata -> ? = ?", [key, Jsonb(value)]

    def _delete_chunks(self, conn: psycopg.Connection, doc_id: str) -> int:
        # Their keyword rows are in the chunks; their vectors go by cascade.
        return int(conn.execute("DELETE FROM chunks WHERE document_id=%s", (doc_id,)).rowcount)

    def _insert_chunks(self, conn: psycopg.Connection, docs: Sequence[tuple[NewDocument, bool]]) -> None:
        """Every chunk of the batch in one statement, then the kept vectors by binary COPY."""
        chunk_ids, doc_ids, colls, idxs, texts, sections, pages, heads = [], [], [], [], [], [], [], []
        for doc, _ in docs:
            for i, text in enumerate(doc.chunks):
                chunk_ids.append(f"{doc.id}:{i}")
                doc_ids.append(doc.id)
                colls.append(doc.collection)
                idxs.append(i)
                texts.append(text)
                sections.append(doc.section(i) or None)
                pages.append(doc.page(i))
                heads.append(heading(doc.title, doc.section(i)) or "")
        rows = conn.execute(
            "INSERT INTO chunks (chunk_id, document_id, collection, idx, text, section, page, tsv)"
            f" SELECT c, d, k, i, t, s, p, {_TSV.format(text='t', title='h')} FROM unnest(%s::text[], %s::text[],"
            " %s::text[], %s::int[], %s::text[], %s::text[], %s::int[], %s::text[]) AS u(c, d, k, i, t, s, p, h)"
            " RETURNING chunk_id, rowid",
            (chunk_ids, doc_ids, colls, idxs, texts, sections, pages, heads),
        ).fetchall()
        rowids: dict[str, int] = dict(rows)
        vectors = {
            rowids[f"{doc.id}:{i}"]: (doc.collection, v)
            for doc, keep in docs
            if keep and doc.embeddings is not None
            for i, v in enumerate(doc.embeddings)
        }
        _copy_vectors(conn, self._vector_oid, vectors)

    def _model_set(self, conn: psycopg.Connection, dims: int) -> None:
        _index_vectors(conn, dims, self.exact_max)

    def _clear_vectors(self, conn: psycopg.Connection, rowids: Sequence[int] | None) -> None:
        if rowids is not None:
            conn.execute("DELETE FROM vectors WHERE chunk_rowid = ANY(%s)", (list(rowids),))
            return
        conn.execute("DELETE FROM vectors")
        pg_indexes.drop_all(conn)
        conn.execute("ALTER TABLE vectors ALTER COLUMN embedding TYPE vector")  # any dimension

    def _write_vectors(self, conn: psycopg.Connection, vectors: dict[int, list[list[float]]]) -> None:
        collections: dict[int, str] = dict(
            conn.execute(
                "SELECT c.rowid, d.collection FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.rowid = ANY(%s)",
                (list(vectors),),
            ).fetchall()
        )
        _copy_vectors(conn, self._vector_oid, {r: (collections[r], v) for r, v in vectors.items()})

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

    # --- retrieval --------------------------------------------------------------------------------------

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
        if not filters:  # at most a collection and the caller's permission filter: the collection column
            within = _readable(collection, collections)
            if within == []:
                return []
            with self._pool.connection() as conn:
                return pg_search.bm25(conn, terms, limit, self.fts_candidates, within)
        scope, params = self._scope(collection, filters, collections)
        with self._pool.connection() as conn:
            return pg_search.bm25(
                conn, terms, limit, self.fts_candidates, scope=self._sql(scope), params=params
            )

    def vector_search(
        self,
        vector: list[float],
        model: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[tuple[int, float]] | None:
        """Top chunks by cosine similarity, each scoring its best vector (pg_search.py); None when the stored
        vectors come from another model."""
        stored_model, dims = self.embed_model()
        if stored_model is None:
            return []
        q = normalise(np.asarray(vector, dtype=np.float32))
        if stored_model != model or dims != q.shape[0]:
            # As on SQLite: a store with no vectors left has nothing to mismatch.
            empty = self._query("SELECT NOT EXISTS (SELECT 1 FROM vectors) AS empty")[0]["empty"]
            return [] if empty else None
        if not filters:  # at most a collection and the caller's permission filter: the collection column
            within = _readable(collection, collections)
            with self._pool.connection() as conn:
                if within is None:
                    return pg_search.nearest(conn, q, limit, self.ef_search)
                if not within:
                    return []
                return pg_search.nearest_in(conn, q, limit, self.ef_search, within, self.exact_max)
        scope, params = self._scope(collection, filters, collections)
        with self._pool.connection() as conn:
            return pg_search.nearest_in_scope(
                conn, q, limit, self.ef_search, self._sql(scope), params, self.exact_max
            )


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return psycopg.conninfo.make_conninfo(url, password="***") if "@" in url else url


def _readable(collection: str | None, collections: list[str] | None) -> list[str] | None:
    """The collections a search may read: a chosen one within the caller's permission filter (None: all)."""
    if collection:
        return [collection] if collections is None or collection in collections else []
    return collections


def _index_vectors(conn: psycopg.Connection, dims: int, exact_max: int) -> None:
    """Fix the vector column's dimension (HNSW needs one) and build the indexes over what is there: the whole
    corpus's and each large collection's (pg_indexes.py)."""
    pg_indexes.drop_all(conn)
    conn.execute(f"ALTER TABLE vectors ALTER COLUMN embedding TYPE vector({int(dims)})")
    pg_indexes.build_global(conn)
    pg_indexes.sync(conn, exact_max, concurrently=False)


def _copy_vectors(
    conn: psycopg.Connection, oid: int, vectors: dict[int, tuple[str, Sequence[Sequence[float]]]]
) -> None:
    """Every vector of these chunks (rowid -> its collection and vectors), normalised, by binary COPY."""
    with conn.cursor().copy(
        "COPY vectors (chunk_rowid, n, collection, embedding) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int4", "text", oid])
        for rowid, (collection, rows) in vectors.items():
            for n, v in enumerate(rows):
                copy.write_row((rowid, n, collection, normalise(np.asarray(v, dtype=np.float32))))

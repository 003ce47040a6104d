"""The stores' raw write paths, for bench_store.py's ratios: the same rows written with plain psycopg / sqlite3
calls and no Cairn code (the schema is Cairn's, made before the clock starts, so both write into the same
tables and indexes).

- PostgreSQL: per transaction, the documents by COPY, the chunks by one INSERT … SELECT FROM unnest (their
  `tsvector` is computed by the server, which COPY cannot do) and the vectors by binary COPY; `writers` threads
  with a connection each. `raw_pg_import` is the large-import path: the same into empty tables, then
  CREATE INDEX … USING hnsw.
- SQLite: per transaction, executemany of the documents, the chunks and the FTS rows.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

TSV = "setweight(to_tsvector('cairn', t), 'A') || setweight(to_tsvector('cairn', h), 'B')"
NOW = "2026-01-01T00:00:00Z"


def _doc_row(d: Any, prefix: str) -> tuple[Any, ...]:
    return (prefix + d.id, d.collection, d.title, None, json.dumps(d.metadata), d.text, "h", NOW, NOW, 0, "x")


def _vector_dumper(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
    assert row is not None
    oid = int(row[0])

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            a = np.asarray(obj, dtype=">f4")
            return struct.pack(">HH", a.shape[0], 0) + a.tobytes()

    VectorDumper.oid = oid
    conn.adapters.register_dumper(np.ndarray, VectorDumper)
    return oid


def _pg_batch(conn: psycopg.Connection, oid: int, docs: Sequence[Any], prefix: str) -> None:
    with conn.transaction():
        with conn.cursor().copy(
            "COPY documents (id, collection, title, url, metadata, text, content_hash, created_at, updated_at,"
            " seq, owner) FROM STDIN"
        ) as copy:
            for d in docs:
                copy.write_row(_doc_row(d, prefix))
        ids = [f"{prefix}{d.id}:{i}" for d in docs for i in range(len(d.chunks))]
        rows = conn.execute(
            f"INSERT INTO chunks (chunk_id, document_id, collection, idx, text, tsv) SELECT c, d, k, i, t, {TSV}"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[])"
            " AS u(c, d, k, i, t, h) RETURNING chunk_id, rowid",
            (
                ids,
                [prefix + d.id for d in docs for _ in d.chunks],
                [d.collection for d in docs for _ in d.chunks],
                [i for d in docs for i in range(len(d.chunks))],
                [t for d in docs for t in d.chunks],
                [d.title or "" for d in docs for _ in d.chunks],
            ),
        ).fetchall()
        rowid = dict(rows)
        with conn.cursor().copy(
            "COPY vectors (chunk_rowid, n, collection, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "text", oid])
            for d in docs:
                for i, vecs in enumerate(d.embeddings):
                    for n, v in enumerate(vecs):
                        row = (rowid[f"{prefix}{d.id}:{i}"], n, d.collection, np.asarray(v, dtype=np.float32))
                        copy.write_row(row)


def raw_pg_ingest(url: str, batches: Sequence[Sequence[Any]], writers: int, prefix: str = "raw-") -> float:
    """Seconds to write `batches` (one transaction each) over `writers` connections; the rows are removed
    afterwards (not timed), so the store is as it was."""
    conns = [psycopg.connect(url, autocommit=True) for _ in range(writers)]
    oids = [_vector_dumper(c) for c in conns]
    start = time.perf_counter()
    threads = [
        threading.Thread(
            target=lambda w=w: [_pg_batch(conns[w], oids[w], b, prefix) for b in batches[w::writers]]
        )
        for w in range(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    conns[0].execute("DELETE FROM documents WHERE id LIKE %s", (prefix + "%",))
    for c in conns:
        c.close()
    return took


def raw_pg_import(
    url: str, batches: Sequence[Sequence[Any]], dims: int, exact_max: int
) -> tuple[float, float]:
    """(seconds to load, seconds to build the HNSW indexes) into empty tables of the same schema: the whole
    corpus's index and, as Cairn keeps them, one per collection of over `exact_max` and under half the vectors."""
    with psycopg.connect(url, autocommit=True) as conn:
        oid = _vector_dumper(conn)
        conn.execute("DROP INDEX IF EXISTS vectors_hnsw")
        conn.execute(f"ALTER TABLE vectors ALTER COLUMN embedding TYPE vector({dims})")
        start = time.perf_counter()
        for b in batches:
            _pg_batch(conn, oid, b, "")
        loaded = time.perf_counter()
        hnsw = "USING hnsw (embedding vector_cosine_ops)"
        conn.execute(f"CREATE INDEX vectors_hnsw ON vectors {hnsw}")
        counts = dict(conn.execute("SELECT collection, COUNT(*) FROM vectors GROUP BY collection").fetchall())
        for i, (c, n) in enumerate(sorted(counts.items())):
            if exact_max < n < sum(counts.values()) / 2:
                conn.execute(f"CREATE INDEX raw_scope_{i} ON vectors {hnsw} WHERE collection = '{c}'")
        return loaded - start, time.perf_counter() - loaded


def raw_sqlite_ingest(path: str, batches: Sequence[Sequence[Any]], prefix: str = "raw-") -> float:
    """Seconds to write `batches` (one transaction each) with executemany; removed afterwards (not timed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for docs in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO documents (id, collection, title, url, metadata, text, content_hash, created_at,"
            " updated_at, seq, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [_doc_row(d, prefix) for d in docs],
        )
        rowid = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM chunks").fetchone()[0]
        chunks, fts = [], []
        for d in docs:
            for i, (text, vecs) in enumerate(zip(d.chunks, d.embeddings, strict=True)):
                rowid += 1
                blob = np.asarray(vecs, dtype=np.float32).tobytes()
                chunks.append((rowid, f"{prefix}{d.id}:{i}", prefix + d.id, i, text, blob))
                fts.append((rowid, text, d.title or ""))
        conn.executemany(
            "INSERT INTO chunks (rowid, chunk_id, document_id, idx, text, embedding) VALUES (?,?,?,?,?,?)",
            chunks,
        )
        conn.executemany("INSERT INTO chunks_fts (rowid, text, title) VALUES (?,?,?)", fts)
        conn.execute("COMMIT")
    took = time.perf_counter() - start
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "DELETE FROM chunks_fts WHERE rowid IN (SELECT rowid FROM chunks WHERE document_id LIKE ?)",
        (prefix + "%",),
    )
    conn.execute("DELETE FROM chunks WHERE document_id LIKE ?", (prefix + "%",))
    conn.execute("DELETE FROM documents WHERE id LIKE ?", (prefix + "%",))
    conn.execute("COMMIT")
    conn.close()
    return took

"""Copy a SQLite store into an empty PostgreSQL one, rows as they are: documents with their owners, seq and
dates, chunks with their rowids, every vector, and the corpus meta (version, embedding model and dimension),
so a user moves backends without re-ingesting or re-embedding; and everything else the store holds
(`_TABLES`: conversations, ratings, the audit chain with its anchor and head, collection permissions, API keys,
connectors), so the move loses nothing. `scripts/copy_store.py` is its command line.

Text goes through the target's binding, which stores NUL as U+FFFD (base.scrub), as any write to it does.
Everything is written in one transaction (a failed copy leaves the target empty), and the HNSW index is
built once at the end, which is much faster than growing it row by row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from cairn_query.store import pg_indexes
from cairn_query.store.base import heading
from cairn_query.store.postgres import _TSV, PostgresStore, _copy_vectors, _index_vectors
from cairn_query.store.sqlite import SQLiteStore


class TargetNotEmpty(Exception):
    """The Postgres store already holds documents; copying would mix two corpora."""


def copy_sqlite_to_postgres(
    sqlite_path: str, pg_url: str, batch: int = 2000, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    SQLiteStore(sqlite_path).close()  # brings an older file up to the current schema first
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    src.row_factory = sqlite3.Row
    dst = PostgresStore(pg_url, pool_min=1, pool_max=1)
    try:
        meta = {r["key"]: r["value"] for r in src.execute("SELECT key, value FROM meta")}
        dims = int(meta["embed_dims"]) if meta.get("embed_dims") else None
        with dst._tx() as conn:
            if conn.execute("SELECT EXISTS (SELECT 1 FROM documents)").fetchone() != (False,):
                raise TargetNotEmpty(
                    f"{pg_url.split('@')[-1]} already holds documents; copy into an empty one"
                )
            pg_indexes.drop_all(conn)  # built once at the end: far faster
            copied = {"documents": _copy_documents(conn, src, batch), "chunks": 0, "vectors": 0}
            _copy_originals(src, conn)
            _copy_chunks(conn, dst._vector_oid, src, dims, batch, copied, progress)
            conn.execute("SELECT setval('chunks_rowid_seq', GREATEST((SELECT MAX(rowid) FROM chunks), 1))")
            copied |= _copy_tables(src, conn)
            for key in _AUDIT_META:  # the chain's ends, so it verifies after the move as before
                if key in meta:
                    conn.execute(
                        "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        (key, meta[key]),
                    )
            if meta.get("embed_model") and dims:
                dst._set_embed_meta(conn, meta["embed_model"], dims)
                _index_vectors(conn, dims, dst.exact_max)
            conn.execute("ANALYZE documents, chunks, vectors")  # plan the first queries on real sizes
            # The version moves on from the source's, so no cache keyed on an old version can match.
            conn.execute(
                "UPDATE meta SET value = %s WHERE key='version'", (str(int(meta.get("version", "0")) + 1),)
            )
        return copied
    finally:
        src.close()
        dst.close()


# In the order their references need; the ids of messages and audit records are kept (the audit chain's
# order), and their sequences carry on after them.
_TABLES = (
    "conversations",
    "messages",
    "feedback",
    "audit",
    "collection_permissions",
    "api_keys",
    "connector_sources",
    "connector_items",
)
_SERIAL = ("messages", "audit")
_AUDIT_META = ("audit_anchor", "audit_head")


def _copy_tables(src: sqlite3.Connection, conn: Any) -> dict[str, int]:
    """Every row of `_TABLES`, column by column (both dialects create the same columns); rows per table."""
    copied = {}
    for table in _TABLES:
        columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
        rows = [tuple(r) for r in src.execute(f"SELECT {', '.join(columns)} FROM {table}")]
        if rows:  # through the store's cursor, which scrubs NULs as every write to it does
            conn.cursor().executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                rows,
            )
        copied[table] = len(rows)
    for table in _SERIAL:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )
    return copied


def _copy_originals(src: sqlite3.Connection, conn: Any) -> None:
    """The kept uploaded files (PDFs), a few at a time: each may be megabytes."""
    for rows in _batches(src.execute("SELECT * FROM originals"), 16):
        conn.cursor().executemany(
            "INSERT INTO originals VALUES (%s, %s, %s)",
            [(r["document_id"], r["content_type"], bytes(r["data"])) for r in rows],
        )


def _copy_documents(conn: Any, src: sqlite3.Connection, batch: int) -> int:
    copied = 0
    for rows in _batches(src.execute("SELECT * FROM documents ORDER BY seq"), batch):
        conn.cursor().executemany(
            "INSERT INTO documents (id, collection, title, url, metadata, text, content_hash,"
            " created_at, updated_at, seq, owner) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [_document(r) for r in rows],
        )
        copied += len(rows)
    return copied


def _copy_chunks(
    conn: Any,
    oid: int,
    src: sqlite3.Connection,
    dims: int | None,
    batch: int,
    copied: dict[str, int],
    progress: Callable[[int], None] | None,
) -> None:
    """Chunks (keeping their rowids) with their keyword rows, then their vectors by binary COPY."""
    query = "SELECT c.*, d.title, d.collection FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY c.rowid"
    for rows in _batches(src.execute(query), batch):
        conn.execute(
            "INSERT INTO chunks (rowid, chunk_id, document_id, collection, idx, text, section, page, tsv)"
            f" SELECT r, c, d, k, i, t, s, p, {_TSV.format(text='t', title='h')}"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[],"
            " %s::int[], %s::text[]) AS u(r, c, d, k, i, t, s, p, h)",
            (
                [r["rowid"] for r in rows],
                [r["chunk_id"] for r in rows],
                [r["document_id"] for r in rows],
                [r["collection"] for r in rows],
                [r["idx"] for r in rows],
                [r["text"] for r in rows],
                [r["section"] or None for r in rows],
                [r["page"] for r in rows],
                [heading(r["title"], r["section"]) or "" for r in rows],
            ),
        )
        vectors = {
            r["rowid"]: (
                r["collection"],
                np.frombuffer(r["embedding"], dtype=np.float32).reshape(-1, dims or 1),
            )
            for r in rows
            if r["embedding"] is not None and dims
        }
        _copy_vectors(conn, oid, vectors)
        copied["chunks"] += len(rows)
        copied["vectors"] += sum(len(v) for _, v in vectors.values())
        if progress:
            progress(copied["chunks"])


def _batches(cursor: sqlite3.Cursor, size: int) -> Iterator[list[sqlite3.Row]]:
    while rows := cursor.fetchmany(size):
        yield rows


def _document(r: sqlite3.Row) -> tuple[Any, ...]:
    return (
        r["id"],
        r["collection"],
        r["title"],
        r["url"],
        Jsonb(json.loads(r["metadata"])),
        r["text"],
        r["content_hash"],
        r["created_at"],
        r["updated_at"],
        r["seq"],
        r["owner"],
    )

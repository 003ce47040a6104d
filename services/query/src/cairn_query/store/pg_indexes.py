"""The vectors' HNSW indexes on PostgreSQL: one over every vector, and one per large collection.

pgvector 0.6 (the one `pgserver` ships) filters *after* its index walk; 0.8's iterative scans are not in it. So a
search scoped to a collection holding 1/7 of the vectors had to walk seven times as far (ef_search 1,000) or scan
the collection exactly, 4× the unscoped time at 100k chunks (docs/benchmarks.md). A partial index per collection
(`WHERE collection = '…'`, pgvector's own advice for filtering on few distinct values) holds that collection's
graph alone, so a scoped walk costs what an unscoped one costs on a smaller corpus (pg_search.nearest_in).

Which collections get one (`wanted`): those holding more than `exact_max` vectors (a smaller one is searched
exactly in a few ms) and less than half of all vectors (the whole index then finds its rows with at most twice
the walk). The price: each vector of such a collection goes into two graphs, so its ingest costs about twice
as much, and the graph's memory.

`ScopeIndexer` builds them CONCURRENTLY (reads and writes go on) in a thread of the store, poked after each
write and at most once per `interval`; one replica at a time (an advisory lock). A bulk load (copy_store, a
reembed) builds them in its own transaction with `sync(concurrently=False)`. A build that died half way leaves
an invalid index, which the next run drops and builds again.
"""

from __future__ import annotations

import hashlib
import threading

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import ConnectionPool

log = structlog.get_logger()

GLOBAL = "vectors_hnsw"
_PREFIX = "vectors_hnsw_c_"
_LOCK = 7_305_512_203  # pg_try_advisory_lock key: one replica builds at a time
_HNSW = "USING hnsw (embedding vector_cosine_ops)"


def index_name(collection: str) -> str:
    """A collection's index: a hash, since a collection's name may hold any character."""
    return _PREFIX + hashlib.sha256(collection.encode()).hexdigest()[:16]


def valid(conn: psycopg.Connection) -> dict[str, float]:
    """The valid per-collection indexes, by name, with the vectors each held when last counted (reltuples)."""
    rows = conn.execute(
        "SELECT c.relname, GREATEST(c.reltuples, 0) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'vectors'::regclass AND i.indisvalid AND starts_with(c.relname, %s)",
        (_PREFIX,),
    ).fetchall()
    return {name: float(n) for name, n in rows}


def wanted(counts: dict[str, int], exact_max: int) -> list[str]:
    """The collections that should have their own index, given each one's vectors."""
    total = sum(counts.values())
    return sorted(c for c, n in counts.items() if exact_max < n < total / 2)


def build_global(conn: psycopg.Connection) -> None:
    conn.execute(f"CREATE INDEX IF NOT EXISTS {GLOBAL} ON vectors {_HNSW}")


def drop_all(conn: psycopg.Connection) -> None:
    """Every vector index (the column's type changes with a new embedding model)."""
    for (name,) in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'vectors'::regclass AND starts_with(c.relname, %s)",
        (GLOBAL,),
    ).fetchall():
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def sync(conn: psycopg.Connection, exact_max: int, concurrently: bool) -> list[str]:
    """Build the indexes `wanted` lacks (dropping a broken one first) and drop those of collections that hold
    no vectors any more; returns the collections indexed now. Concurrently, `conn` must be in autocommit mode."""
    how = sql.SQL("CONCURRENTLY " if concurrently else "")
    counts: dict[str, int] = dict(
        conn.execute("SELECT collection, COUNT(*) FROM vectors GROUP BY collection").fetchall()
    )
    have = valid(conn)
    for name in set(have) - {index_name(c) for c in counts}:  # an emptied collection's
        conn.execute(sql.SQL("DROP INDEX {}IF EXISTS {}").format(how, sql.Identifier(name)))
    built = []
    for collection in wanted(counts, exact_max):
        name = index_name(collection)
        if name in have:
            continue
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP INDEX {}IF EXISTS {}").format(how, ident))  # an invalid one, if any
        conn.execute(
            sql.SQL("CREATE INDEX {}{} ON vectors {} WHERE collection = {}").format(
                how, ident, sql.SQL(_HNSW), sql.Literal(collection)
            )
        )
        built.append(collection)
        log.info("scope_index_built", collection=collection, index=name)
    return built


class ScopeIndexer:
    """A thread that keeps the per-collection indexes in step with the corpus: `poke()` after a write."""

    def __init__(self, pool: ConnectionPool, exact_max: int, interval: float = 30.0) -> None:
        self._pool = pool
        self._exact_max = exact_max
        self._interval = interval
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="cairn-scope-indexer", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def close(self) -> None:
        self._stopping.set()
        self._poked.set()
        if self._conn is not None:  # a build under way: cancel it (it leaves an invalid index, rebuilt later)
            self._conn.cancel_safe()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._poked.wait()
            if self._stopping.is_set():
                return
            self._poked.clear()
            try:
                self.run_once()
            except Exception as exc:  # searches still work meanwhile (exactly or by the whole index)
                if not self._stopping.is_set():
                    log.warning("scope_index_failed", error=str(exc))
            self._stopping.wait(self._interval)

    def run_once(self, wait: bool = False) -> list[str]:
        """One pass: build what is wanted, unless another replica is at it (or, with `wait`, after it)."""
        with self._pool.connection() as conn:
            # Polled, never waited for inside a statement: CREATE INDEX CONCURRENTLY waits for every open
            # transaction, a waiting pg_advisory_lock() included, which would deadlock with it.
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone()[0]:  # type: ignore[index]
                if not wait or self._stopping.wait(0.05):
                    return []
            self._conn = conn
            try:
                if conn.execute("SELECT to_regclass(%s)", (GLOBAL,)).fetchone() == (None,):
                    return []  # no embedding model yet: nothing to index
                return sync(conn, self._exact_max, concurrently=True)
            finally:
                self._conn = None
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))

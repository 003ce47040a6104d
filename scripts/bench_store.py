"""Store backends side by side: SQLite (numpy brute force over an in-memory matrix) and PostgreSQL (pgvector HNSW),
each write path as a ratio of the same rows written raw (bench_store_raw.py, no Cairn code) in the same run.

On one corpus of 100k chunks (10 per document, four synthetic sentences each, 7 collections), each chunk with
three 384-dim unit vectors (the chunk's and two sentences', as documents.vector_texts stores them):
1. build: SQLite by batched upserts; Postgres by `copy_store` (the large import: COPY, HNSW built once after),
   against the raw large import (the same rows by COPY into empty tables, then CREATE INDEX).
2. incremental ingest: 200 more documents into each 100k store with the index in place, two writers, one
   document per transaction (as QS's uploads) and ten per transaction (upsert_many), against the same rows
   written raw the same way.
3. retrieval in process (no HTTP, query vector given): hybrid search (BM25 + vectors + fusion) p50/p99, scoped
   to one collection (1/7), under the permission filter of a caller who may read one or two collections (1/7,
   2/7), filtered by metadata (1/7), and each half alone.
4. recall@10 of HNSW against exact search (numpy, best vector per chunk) on the same queries, per ef_search.
5. with --rss: RSS of one real QS process on each store after 50 /v1/search requests (toy gateway).

Needs pgserver (a dev dependency). Run: `.venv/bin/python scripts/bench_store.py [--quick] [--chunks N]`
(quick: 10k chunks). Prints the load average beside each step: the VM is shared. At 1M chunks:
`--chunks 1000000 --no-raw --maintenance-mem 8GB` (the raw large import would add another hour; the HNSW graph
of 3M vectors does not fit the default 2 GB). `--keep` leaves the server and corpus for `--reuse DIR`.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from bench_query import WEIGHTS, WORDS, pct, sentence, start_gateway, start_qs
from bench_store_raw import raw_pg_import, raw_pg_ingest, raw_sqlite_ingest
from cairn_query.corpus.retrieval import Retriever
from cairn_query.settings import QuerySettings
from cairn_query.store import NewDocument, PostgresStore, SQLiteStore, Store
from cairn_query.store.copy import copy_sqlite_to_postgres
from cairn_testing import start_postgres

DIMS = 384
PER_DOC = 10
VECTORS_PER_CHUNK = 3  # the chunk's own, then two sentences'


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIMS), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def normalised(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_docs(first: int, count: int, topics: np.ndarray | None) -> list[NewDocument]:
    """Documents of 10 chunks, the same for the same `first` (seeded by it, so a path can make them again).
    With `topics`, toy embeddings with the structure of real ones: each document near one of the topic
    directions, each chunk near its document's, each sentence near its chunk's (so a vector's nearest
    neighbours are a few dozen related ones, not a tie among all). Without, uniform random unit vectors: no
    neighbour stands out, HNSW's worst case."""
    rng, r = np.random.default_rng(first + 1), random.Random(first + 2)
    docs = []
    for d in range(first, first + count):
        texts = [" ".join(sentence(r) for _ in range(4)) for _ in range(PER_DOC)]
        if topics is None:
            vecs = unit(rng, PER_DOC * VECTORS_PER_CHUNK).reshape(PER_DOC, VECTORS_PER_CHUNK, DIMS)
        else:
            doc_vec = normalised(topics[d % len(topics)] + 0.6 * unit(rng, 1)[0])
            chunk = normalised(doc_vec + 0.6 * unit(rng, PER_DOC))
            sents = normalised(chunk[:, None, :] + 0.6 * unit(rng, PER_DOC * 2).reshape(PER_DOC, 2, DIMS))
            vecs = np.concatenate([chunk[:, None, :], sents], axis=1)
        docs.append(
            NewDocument(f"d{d}", f"c{d % 7}", f"Doc {d}", None, {"n": d % 7}, "", str(d), texts, vecs, "m")  # type: ignore[arg-type]
        )
    return docs


def batches(docs: list[NewDocument], size: int) -> list[list[NewDocument]]:
    return [docs[i : i + size] for i in range(0, len(docs), size)]


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def ingest(store: Store, groups: list[list[NewDocument]], writers: int) -> float:
    """Seconds to upsert `groups` (one transaction each) from `writers` threads."""
    t = time.perf_counter()
    threads = [
        threading.Thread(target=lambda w=w: [store.upsert_many(g, 10_000_000) for g in groups[w::writers]])
        for w in range(writers)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def all_vectors(sqlite_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Every stored vector (rows) and its chunk's id, read back from the SQLite file (chunk ids, not rowids:
    documents ingested into each store after the copy got their own rowids)."""
    import sqlite3

    conn = sqlite3.connect(sqlite_path)
    rows = conn.execute("SELECT chunk_id, embedding FROM chunks WHERE embedding IS NOT NULL").fetchall()
    conn.close()
    blocks = [np.frombuffer(b, dtype=np.float32).reshape(-1, DIMS) for _, b in rows]
    owners = np.repeat([r for r, _ in rows], [len(b) for b in blocks])
    return np.vstack(blocks), owners


def exact_top(matrix: np.ndarray, owners: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    sims = matrix @ (q / np.linalg.norm(q))
    order = np.argsort(-sims)
    seen: list[str] = []
    for i in order:
        if str(owners[i]) not in seen:
            seen.append(str(owners[i]))
            if len(seen) == k:
                break
    return seen


def timed(fn, runs: list) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for args in runs:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def qs_rss_mib(gw_url: str, env: dict[str, str], queries: list[str]) -> float:
    srv = start_qs(_Gw(gw_url), env.get("QS_DB_PATH", "/nonexistent/unused.sqlite3"), **env)  # type: ignore[arg-type]
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            for q in queries:
                client.post("/v1/search", json={"query": q}).raise_for_status()
        status = Path(f"/proc/{srv.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024
    finally:
        srv.stop()


class _Gw:
    def __init__(self, url: str) -> None:
        self.url = url


def build(sqlite_path: str, url: str, raw_url: str | None, n_docs: int, topics: np.ndarray | None) -> None:
    """The 100k corpus: SQLite by batched upserts, Postgres by copy_store, and the raw large import."""
    sq = SQLiteStore(sqlite_path)
    t = time.perf_counter()
    for first in range(0, n_docs, 500):
        for group in batches(make_docs(first, min(500, n_docs - first), topics), 50):
            sq.upsert_many(group)
    sq.close()
    print(
        f"build sqlite by upsert_many (50 documents a transaction): {time.perf_counter() - t:.1f}s ({load()})"
    )
    t = time.perf_counter()
    copy_sqlite_to_postgres(sqlite_path, url)
    cairn = time.perf_counter() - t
    print(
        f"large import, postgres by copy_store (COPY, HNSW built after): {cairn:.1f}s ({load()})", flush=True
    )
    if raw_url is None:
        return
    PostgresStore(raw_url, pool_min=1, pool_max=1).close()  # the same schema, made before the clock starts
    # Made before the clock starts (numpy vectors: ~1.6 KB a vector in memory).
    groups = [make_docs(first, min(500, n_docs - first), topics) for first in range(0, n_docs, 500)]
    rows, index = raw_pg_import(raw_url, groups, DIMS, QuerySettings().store_exact_max_vectors)
    del groups
    print(
        f"large import, raw (COPY + unnest INSERT, then CREATE INDEX, the whole and per collection): load {rows:.1f}s + index {index:.1f}s"
        f" = {rows + index:.1f}s; copy_store / raw = {(rows + index) / cairn:.2f}× (target >= 0.5) ({load()})",
        flush=True,
    )


def incremental(sq: SQLiteStore, pgs: PostgresStore, url: str, sqlite_path: str, n_docs: int, topics) -> None:  # type: ignore[no-untyped-def]
    """200 more documents into each 100k store, one and ten per transaction, against the same rows raw."""
    for per_tx, first in ((1, n_docs), (10, n_docs + 200)):
        groups = batches(make_docs(first, 200, topics), per_tx)
        chunks = 200 * PER_DOC
        raw_pg = raw_pg_ingest(url, groups, writers=2)
        cairn_pg = ingest(pgs, groups, writers=2)
        raw_sq = raw_sqlite_ingest(sqlite_path, groups)
        cairn_sq = ingest(
            sq, [[d for d in g] for g in batches(make_docs(first + 400, 200, topics), per_tx)], 1
        )
        print(
            f"incremental ingest, {per_tx} document(s) a transaction, {chunks} chunks / {chunks * 3} vectors:"
            f" postgres (2 writers) {chunks / cairn_pg:.0f} chunks/s vs raw {chunks / raw_pg:.0f}"
            f" ({raw_pg * 1000 / (chunks * 3):.2f} ms a vector raw)"
            f" = {raw_pg / cairn_pg:.2f}× (target >= 0.7); sqlite {chunks / cairn_sq:.0f} chunks/s vs raw"
            f" {chunks / raw_sq:.0f} = {raw_sq / cairn_sq:.2f}× ({load()})",
            flush=True,
        )


def retrieval(stores: dict[str, Store], qtexts: list[str], qvecs: list[np.ndarray]) -> None:
    for name, store in stores.items():
        retriever = Retriever(QuerySettings(), store, None, None)  # type: ignore[arg-type]
        pairs = list(zip(qtexts, qvecs, strict=True))
        target = 1.5 if name == "postgres" else 1.2  # issue 25's targets
        hybrid = timed(retriever._search_sync, [(t, v, "m", 5, None, {}, None) for t, v in pairs])
        scoped = timed(retriever._search_sync, [(t, v, "m", 5, "c3", {}, None) for t, v in pairs])
        # The permission filter of a caller who may read one collection, then two of the seven.
        allowed = timed(retriever._search_sync, [(t, v, "m", 5, None, {}, ["c3"]) for t, v in pairs])
        allowed2 = timed(retriever._search_sync, [(t, v, "m", 5, None, {}, ["c1", "c3"]) for t, v in pairs])
        filtered = timed(
            retriever._search_sync, [(t, v, "m", 5, None, {"n": 3}, None) for t, v in pairs[:100]]
        )
        vector = timed(store.vector_search, [(v.tolist(), "m", 50, None, {}) for v in qvecs])
        vscoped = timed(store.vector_search, [(v.tolist(), "m", 50, "c3", {}) for v in qvecs])
        bm25 = timed(store.bm25, [(t, 50, None, {}) for t in qtexts])
        bscoped = timed(store.bm25, [(t, 50, "c3", {}) for t in qtexts])
        base = pct(hybrid, 0.5)
        print(
            f"{name}: hybrid p50 {base:.1f} ms p99 {pct(hybrid, 0.99):.1f} ms;"
            f" scoped to a collection (1/7) p50 {pct(scoped, 0.5):.1f} ms"
            f" ({pct(scoped, 0.5) / base:.2f}× unscoped, target <= {target});"
            f" permission filter 1/7 p50 {pct(allowed, 0.5):.1f} ms ({pct(allowed, 0.5) / base:.2f}×),"
            f" 2/7 p50 {pct(allowed2, 0.5):.1f} ms ({pct(allowed2, 0.5) / base:.2f}×);"
            f" metadata filter (1/7) p50 {pct(filtered, 0.5):.1f} ms; vector p50 {pct(vector, 0.5):.1f} ms"
            f" (scoped {pct(vscoped, 0.5):.1f} ms); bm25 p50 {pct(bm25, 0.5):.1f} ms"
            f" (scoped {pct(bscoped, 0.5):.1f} ms) ({load()})",
            flush=True,
        )


def recall(pgs: PostgresStore, sqlite_path: str, qvecs: list[np.ndarray]) -> None:
    matrix, owners = all_vectors(sqlite_path)
    truth = [exact_top(matrix, owners, q, 10) for q in qvecs]
    for ef in (40, 100, 200):
        pgs.ef_search = ef
        found, times = [], []
        for q in qvecs:
            t = time.perf_counter()
            hits = pgs.vector_search(q.tolist(), "m", 10, None, {}) or []
            times.append(time.perf_counter() - t)
            rows = pgs.chunks_by_rowid([rid for rid, _ in hits])  # after the clock: chunk ids to compare
            found.append([rows[rid].chunk_id for rid, _ in hits])
        rec = np.mean([len(set(f) & set(g)) / 10 for f, g in zip(found, truth, strict=True)])
        print(f"hnsw ef_search={ef}: recall@10 {rec:.3f} (target >= 0.95), p50 {pct(times, 0.5):.1f} ms")
    pgs.ef_search = 200


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10k chunks")
    parser.add_argument("--chunks", type=int, default=None, help="corpus size in chunks (default 100k)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors (HNSW's worst case)")
    parser.add_argument("--rss", action="store_true", help="also one QS process's RSS on each store")
    parser.add_argument(
        "--reuse",
        default=None,
        help="a folder a killed run left (pg/ still running, bench.sqlite3): retrieval only",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw large import (at 1M: an hour)")
    parser.add_argument("--maintenance-mem", default="2GB", help="maintenance_work_mem for the index builds")
    parser.add_argument("--keep", action="store_true", help="leave the server and corpus for --reuse")
    args, _ = parser.parse_known_args()
    n_docs = (args.chunks or (10_000 if args.quick else 100_000)) // PER_DOC
    rng, r = np.random.default_rng(1), random.Random(2)
    topics = None if args.uniform else unit(rng, max(10, n_docs // 10))
    if args.reuse:
        return measure_again(Path(args.reuse), args.queries, rng, r)
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-store-"))
    pg = start_postgres(tmp / "pg", keep=args.keep)
    try:
        url, raw_url = pg.url("bench"), pg.url("raw")
        for db in ("bench", "raw"):
            pg.psql(f"ALTER DATABASE {db} SET maintenance_work_mem = '{args.maintenance_mem}';")
            pg.psql(f"ALTER DATABASE {db} SET max_parallel_maintenance_workers = 2;")
        sqlite_path = str(tmp / "bench.sqlite3")
        print(
            f"corpus: {n_docs * PER_DOC} chunks, {n_docs * PER_DOC * VECTORS_PER_CHUNK} vectors of {DIMS} dims,"
            f" {'uniform random' if topics is None else f'{len(topics)} topics'}, 7 collections ({load()})",
            flush=True,
        )
        build(sqlite_path, url, None if args.no_raw else raw_url, n_docs, topics)
        pg.psql('DROP DATABASE "raw";')
        sq, pgs = SQLiteStore(sqlite_path), PostgresStore(url, pool_min=1, pool_max=4)
        incremental(sq, pgs, url, sqlite_path, n_docs, topics)
        qtexts = searches(sq, pgs, sqlite_path, args.queries, rng, r)
        if args.rss:
            rss(url, pg.url("empty"), sqlite_path, qtexts[:50])
    finally:
        if args.keep:
            print(f"kept: --reuse {tmp}")
        else:
            pg.stop()
    return 0


def searches(
    sq: SQLiteStore, pgs: PostgresStore, sqlite_path: str, n: int, rng: np.random.Generator, r: random.Random
) -> list[str]:
    matrix, _ = all_vectors(sqlite_path)
    qtexts = [" ".join(r.choices(WORDS[50:], WEIGHTS[50:], k=5)) for _ in range(n)]
    qvecs = [
        matrix[r.randrange(len(matrix))] + rng.standard_normal(DIMS, dtype=np.float32) * 0.02 for _ in qtexts
    ]
    del matrix
    sq.vector_search(qvecs[0].tolist(), "m", 50, None, {})  # SQLite loads its matrix at the first query
    retrieval({"sqlite": sq, "postgres": pgs}, qtexts, qvecs)
    recall(pgs, sqlite_path, qvecs)
    sq.close()
    pgs.close()
    return qtexts


def measure_again(folder: Path, n: int, rng: np.random.Generator, r: random.Random) -> int:
    """Retrieval and recall on the corpus a killed run left behind (its server is still up)."""
    url = f"postgresql://postgres:@/bench?host={folder / 'pg'}"
    sqlite_path = str(folder / "bench.sqlite3")
    print(f"reusing {folder} ({load()})", flush=True)
    searches(SQLiteStore(sqlite_path), PostgresStore(url, pool_min=1, pool_max=4), sqlite_path, n, rng, r)
    return 0


def rss(url: str, empty_url: str, sqlite_path: str, words: list[str]) -> None:
    gw = start_gateway()
    try:
        rss_pg = qs_rss_mib(gw.url, {"QS_STORE_URL": url, "QS_LOG_LEVEL": "WARNING"}, words)
        rss_pg_empty = qs_rss_mib(gw.url, {"QS_STORE_URL": empty_url, "QS_LOG_LEVEL": "WARNING"}, words)
        rss_sq = qs_rss_mib(gw.url, {"QS_DB_PATH": sqlite_path, "QS_LOG_LEVEL": "WARNING"}, words)
    finally:
        gw.stop()
    print(
        f"QS RSS after 50 searches: postgres corpus {rss_pg:.0f} MiB, postgres empty {rss_pg_empty:.0f} MiB,"
        f" sqlite corpus {rss_sq:.0f} MiB"
    )


if __name__ == "__main__":
    raise SystemExit(main())

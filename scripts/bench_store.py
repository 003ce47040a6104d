"""Store backends side by side: SQLite (numpy brute force over an in-memory matrix) and PostgreSQL (pgvector HNSW).

On one corpus of 100k chunks (10 per document, four synthetic sentences each), each chunk with three 384-dim
random unit vectors (the chunk's and two sentences', as documents.vector_texts stores them):
1. build: SQLite by upserts, then Postgres by scripts/copy_store.py's copy (bulk, HNSW built once).
2. ingest: the same 2,000 more chunks upserted into each 100k store (the steady state, index in place).
3. retrieval in process (no HTTP, query vector given): hybrid search (BM25 + vectors + fusion) p50/p99 on each,
   and vector search alone.
4. recall@10 of HNSW against exact search (numpy, best vector per chunk) on the same queries, per ef_search.
5. RSS of one real QS process on each store after 50 /v1/search requests (toy gateway): SQLite loads the
   vectors into memory, Postgres does not.

Needs pgserver (a dev dependency). Run: `.venv/bin/python scripts/bench_store.py [--quick]` (quick: 10k chunks).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from bench_query import WEIGHTS, WORDS, pct, sentence, start_gateway, start_qs
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


def make_docs(
    first: int, count: int, rng: np.random.Generator, r: random.Random, topics: np.ndarray | None
) -> list[NewDocument]:
    """Documents of 10 chunks. With `topics`, toy embeddings with the structure of real ones: each document
    near one of the topic directions, each chunk near its document's, each sentence near its chunk's (so a
    vector's nearest neighbours are a few dozen related ones, not a tie among all). Without, uniform random
    unit vectors: no neighbour stands out, HNSW's worst case."""
    docs = []
    for d in range(first, first + count):
        texts = [" ".join(sentence(r) for _ in range(4)) for _ in range(PER_DOC)]
        if topics is None:
            vecs = unit(rng, PER_DOC * VECTORS_PER_CHUNK).reshape(PER_DOC, VECTORS_PER_CHUNK, DIMS).tolist()
        else:
            doc_vec = normalised(topics[d % len(topics)] + 0.6 * unit(rng, 1)[0])
            chunk = normalised(doc_vec + 0.6 * unit(rng, PER_DOC))
            sents = normalised(chunk[:, None, :] + 0.6 * unit(rng, PER_DOC * 2).reshape(PER_DOC, 2, DIMS))
            vecs = np.concatenate([chunk[:, None, :], sents], axis=1).tolist()
        docs.append(
            NewDocument(f"d{d}", "default", f"Doc {d}", None, {"n": d % 7}, "", str(d), texts, vecs, "m")
        )
    return docs


def ingest(store: Store, docs: list[NewDocument]) -> float:
    """Chunks per second."""
    t = time.perf_counter()
    for doc in docs:
        store.upsert(doc, max_chunks=10_000_000)
    return sum(len(d.chunks) for d in docs) / (time.perf_counter() - t)


def all_vectors(sqlite_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Every stored vector (rows) and its chunk's rowid, read back from the SQLite file."""
    import sqlite3

    conn = sqlite3.connect(sqlite_path)
    rows = conn.execute("SELECT rowid, embedding FROM chunks WHERE embedding IS NOT NULL").fetchall()
    conn.close()
    blocks = [np.frombuffer(b, dtype=np.float32).reshape(-1, DIMS) for _, b in rows]
    owners = np.repeat([r for r, _ in rows], [len(b) for b in blocks])
    return np.vstack(blocks), owners


def exact_top(matrix: np.ndarray, owners: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    sims = matrix @ (q / np.linalg.norm(q))
    order = np.argsort(-sims)
    seen: list[int] = []
    for i in order:
        if int(owners[i]) not in seen:
            seen.append(int(owners[i]))
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10k chunks")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uniform", action="store_true", help="uniform random vectors (HNSW's worst case)")
    args = parser.parse_args()
    n_docs = 1_000 if args.quick else 10_000
    rng, r = np.random.default_rng(1), random.Random(2)
    topics = None if args.uniform else unit(rng, max(10, n_docs // 10))
    tmp = Path(tempfile.mkdtemp(prefix="cairn-bench-store-"))
    pg = start_postgres(tmp / "pg")
    gw = start_gateway()
    try:
        url = pg.url("bench")
        pg.psql("ALTER DATABASE bench SET maintenance_work_mem = '2GB';")
        pg.psql("ALTER DATABASE bench SET max_parallel_maintenance_workers = 2;")
        sqlite_path = str(tmp / "bench.sqlite3")
        print(
            f"corpus: {n_docs * PER_DOC} chunks, {n_docs * PER_DOC * VECTORS_PER_CHUNK} vectors of {DIMS} dims,"
            f" {'uniform random' if topics is None else f'{len(topics)} topics'}"
        )

        # 1. build
        sq = SQLiteStore(sqlite_path)
        t = time.perf_counter()
        for first in range(0, n_docs, 500):
            ingest(sq, make_docs(first, min(500, n_docs - first), rng, r, topics))
        print(f"build sqlite by upserts: {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        copy_sqlite_to_postgres(sqlite_path, url)
        print(f"build postgres by copy_store (HNSW built once): {time.perf_counter() - t:.1f}s", flush=True)
        pgs = PostgresStore(url, pool_min=1, pool_max=2)

        # 2. ingest: the same 200 documents into each
        extra = make_docs(n_docs, 200, rng, r, topics)
        sq_rate = ingest(sq, extra)
        pg_rate = ingest(pgs, extra)
        print(
            f"ingest on top of the corpus (2,000 chunks, 6,000 vectors): sqlite {sq_rate:.0f} chunks/s,"
            f" postgres {pg_rate:.0f} chunks/s, ratio {pg_rate / sq_rate:.2f} (target >= 0.5)",
            flush=True,
        )

        # 3. retrieval
        matrix, owners = all_vectors(sqlite_path)
        qtexts = [" ".join(r.choices(WORDS[50:], WEIGHTS[50:], k=5)) for _ in range(args.queries)]
        qvecs = [
            matrix[r.randrange(len(matrix))] + rng.standard_normal(DIMS, dtype=np.float32) * 0.02
            for _ in qtexts
        ]
        sq.vector_search(qvecs[0].tolist(), "m", 50, None, {})  # SQLite loads its matrix at the first query
        for name, store in (("sqlite", sq), ("postgres", pgs)):
            retriever = Retriever(QuerySettings(), store, None, None)  # type: ignore[arg-type]
            hybrid = timed(
                retriever._search_sync, [(t, v, "m", 5, None, {}) for t, v in zip(qtexts, qvecs, strict=True)]
            )
            vector = timed(store.vector_search, [(v.tolist(), "m", 50, None, {}) for v in qvecs])
            bm25 = timed(store.bm25, [(t, 50, None, {}) for t in qtexts])
            filtered = timed(
                retriever._search_sync,
                [(t, v, "m", 5, None, {"n": 3}) for t, v in zip(qtexts[:50], qvecs[:50], strict=True)],
            )
            print(
                f"{name}: hybrid p50 {pct(hybrid, 0.5):.1f} ms p99 {pct(hybrid, 0.99):.1f} ms;"
                f" vector p50 {pct(vector, 0.5):.1f} ms; bm25 p50 {pct(bm25, 0.5):.1f} ms;"
                f" hybrid with a filter (1/7 of the corpus) p50 {pct(filtered, 0.5):.1f} ms",
                flush=True,
            )

        # 4. recall@10 per ef_search
        truth = [exact_top(matrix, owners, q, 10) for q in qvecs]
        for ef in (40, 100, 200):
            pgs.ef_search = ef
            found, times = [], []
            for q in qvecs:
                t = time.perf_counter()
                hits = pgs.vector_search(q.tolist(), "m", 10, None, {}) or []
                times.append(time.perf_counter() - t)
                found.append([rid for rid, _ in hits])
            recall = np.mean([len(set(f) & set(g)) / 10 for f, g in zip(found, truth, strict=True)])
            print(
                f"hnsw ef_search={ef}: recall@10 {recall:.3f} (target >= 0.95), p50 {pct(times, 0.5):.1f} ms"
            )
        sq.close()
        pgs.close()

        # 5. one QS process's RSS after 50 searches
        words = qtexts[:50]
        rss_pg = qs_rss_mib(gw.url, {"QS_STORE_URL": url, "QS_LOG_LEVEL": "WARNING"}, words)
        rss_pg_empty = qs_rss_mib(gw.url, {"QS_STORE_URL": pg.url("empty"), "QS_LOG_LEVEL": "WARNING"}, words)
        rss_sq = qs_rss_mib(gw.url, {"QS_DB_PATH": sqlite_path, "QS_LOG_LEVEL": "WARNING"}, words)
        print(
            f"QS RSS after 50 searches: postgres corpus {rss_pg:.0f} MiB, postgres empty {rss_pg_empty:.0f} MiB,"
            f" sqlite corpus {rss_sq:.0f} MiB"
        )
    finally:
        gw.stop()
        pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

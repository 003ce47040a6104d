"""Query service benchmark: ingest rate, search latency at 10k and 100k chunks, and QS's added time to first token.

1. ingest: documents posted to a real QS (toy gateway embedder), chunks written per second, end to end.
2. search: the store and retriever in process (no HTTP, query vector given) over 10k and 100k synthetic chunks
   with 384-dim vectors (MiniLM's size): BM25 alone, numpy brute-force vectors alone, and the full hybrid
   search with fusion; p50/p99. With `sqlite_vec` and `apsw` importable it also times sqlite-vec's vec0 KNN on
   the same vectors (the extension route; this Python's sqlite3 cannot load extensions).
3. time to first token: a streaming grounded /v1/generate sent to the toy gateway directly, vs. QS /v1/chat
   (cache off). "Retrieval included" is QS's TTFT minus the direct one; "excluded" subtracts the time until QS's
   `sources` event (sent once retrieval is done) as well, leaving the relay's own cost. Both sides are measured
   with the client stack QS itself calls the gateway with (`cairn_core.make_http_client`: httpx over aiohttp),
   so the direct baseline does not carry a client cost the path through QS does not have. A difference smaller
   than the spread of the direct measurement is printed as not resolved.

Run: `make bench` or `.venv/bin/python scripts/bench_query.py [--quick] [--ttft-only]` (quick: 10k chunks only,
fewer requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from cairn_core import make_http_client
from cairn_testing import ServerProcess, start_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "services" / "query" / "src"))

from cairn_query.settings import QuerySettings  # noqa: E402
from cairn_query.store import NewDocument, SQLiteStore  # noqa: E402

# A synthetic vocabulary with a Zipf-like frequency, so that BM25 sees common and rare words as in real text.
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pe", "da", "gu", "fe", "zo", "bi"]
WORDS = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})[:5000]
WEIGHTS = [1 / (i + 1) for i in range(len(WORDS))]
DIMS = 384


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))] * 1000


def start_gateway(**env: str) -> ServerProcess:
    base = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": "toy",
        "LLM_EMBED_PROVIDER": "toy",
        "LLM_LOG_LEVEL": "WARNING",
    }
    return start_server("bench-gateway", ["cairn_gateway"], env={**base, **env}, health_path="/readyz")


def start_qs(gw: ServerProcess, db: str, **env: str) -> ServerProcess:
    base = {"QS_PORT": "{port}", "QS_GATEWAY_URL": gw.url, "QS_DB_PATH": db, "QS_LOG_LEVEL": "WARNING"}
    # QS_MIN_EVIDENCE is calibrated on MiniLM's cosines; behind the toy embedder (another scale) the
    # answerability gate is off, as in QS's own tests, or every question is refused with NO_CONTEXT.
    base["QS_MIN_EVIDENCE"] = base["QS_ANSWER_EVIDENCE"] = "-1"
    return start_server("bench-query", ["cairn_query"], env={**base, **env}, health_path="/readyz")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, WEIGHTS, k=rng.randint(8, 16))).capitalize() + "."


# --- 1. ingest -------------------------------------------------------------------------------------------


def bench_ingest(docs: int) -> dict[str, float]:
    rng = random.Random(1)
    gw = start_gateway()
    tmp = tempfile.mkdtemp(prefix="cairn-bench-")
    qs = start_qs(gw, f"{tmp}/ingest.sqlite3")
    try:
        bodies = [
            {"id": f"doc{i}", "title": f"Doc {i}", "text": " ".join(sentence(rng) for _ in range(40))}
            for i in range(docs)
        ]
        chunks = 0
        start = time.perf_counter()
        with httpx.Client(base_url=qs.url, timeout=60) as client:
            for body in bodies:
                chunks += client.post("/v1/documents", json=body).json()["chunks"]
        elapsed = time.perf_counter() - start
    finally:
        qs.stop()
        gw.stop()
    return {"docs": docs, "chunks": chunks, "chunks_per_s": chunks / elapsed, "docs_per_s": docs / elapsed}


# --- 2. search -------------------------------------------------------------------------------------------


def build_store(path: str, n_chunks: int, rng: np.random.Generator) -> tuple[SQLiteStore, np.ndarray]:
    store = SQLiteStore(path)
    r = random.Random(2)
    per_doc = 10
    vectors = rng.standard_normal((n_chunks, DIMS), dtype=np.float32)
    for d in range(n_chunks // per_doc):
        texts = [" ".join(sentence(r) for _ in range(4)) for _ in range(per_doc)]
        # One vector per chunk: the chunk's own (a real store also keeps one per sentence, ~4x the rows).
        vecs = [[v] for v in vectors[d * per_doc : (d + 1) * per_doc].tolist()]
        store.upsert(
            NewDocument(f"d{d}", "default", f"Doc {d}", None, {"n": d % 7}, "", str(d), texts, vecs, "m")
        )
    return store, vectors


def bench_search(n_chunks: int, queries: int) -> dict[str, float]:
    from cairn_query.corpus.retrieval import Retriever

    rng = np.random.default_rng(3)
    tmp = tempfile.mkdtemp(prefix="cairn-bench-")
    t0 = time.perf_counter()
    store, vectors = build_store(f"{tmp}/s.sqlite3", n_chunks, rng)
    build_s = time.perf_counter() - t0
    retriever = Retriever(QuerySettings(), store, None, None)  # type: ignore[arg-type]
    r = random.Random(4)
    # Queries use content words: the 50 most frequent synthetic words play the part of stopwords.
    qtexts = [" ".join(r.choices(WORDS[50:], WEIGHTS[50:], k=5)) for _ in range(queries)]
    qvecs = [
        vectors[r.randrange(n_chunks)] + rng.standard_normal(DIMS, dtype=np.float32) * 0.1 for _ in qtexts
    ]
    store.vector_search(qvecs[0].tolist(), "m", 50, None, {})  # load the matrix once (done at first query)
    times: dict[str, list[float]] = {"bm25": [], "vector": [], "hybrid": [], "hybrid_filtered": []}
    for text, vec in zip(qtexts, qvecs, strict=True):
        t = time.perf_counter()
        store.bm25(text, 50, None, {})
        times["bm25"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.vector_search(vec.tolist(), "m", 50, None, {})
        times["vector"].append(time.perf_counter() - t)
        t = time.perf_counter()
        retriever._search_sync(text, vec, "m", 5, None, {})
        times["hybrid"].append(time.perf_counter() - t)
        t = time.perf_counter()
        retriever._search_sync(text, vec, "m", 5, None, {"n": 3})
        times["hybrid_filtered"].append(time.perf_counter() - t)
    out = {"chunks": n_chunks, "build_s": build_s}
    for k, v in times.items():
        out[f"{k}_p50"], out[f"{k}_p99"] = pct(v, 0.5), pct(v, 0.99)
    out.update(bench_sqlite_vec(vectors, qvecs))
    store.close()
    return out


def bench_sqlite_vec(vectors: np.ndarray, qvecs: list[np.ndarray]) -> dict[str, float]:
    try:
        import apsw  # type: ignore[import-not-found]
        import sqlite_vec  # type: ignore[import-not-found]
    except ImportError:
        return {}
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{DIMS}] distance_metric=cosine)")
    with conn:
        conn.executemany(
            "INSERT INTO v(rowid, embedding) VALUES (?, ?)",
            ((i + 1, vec.astype(np.float32).tobytes()) for i, vec in enumerate(vectors)),
        )
    times = []
    for vec in qvecs:
        t = time.perf_counter()
        list(conn.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = 50", (vec.tobytes(),)))
        times.append(time.perf_counter() - t)
    return {"sqlite_vec_p50": pct(times, 0.5), "sqlite_vec_p99": pct(times, 0.99)}


# --- 3. time to first token ------------------------------------------------------------------------------


async def first_delta(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float, float]:
    """(seconds to the first delta, seconds to the `sources` event or nan)."""
    start = time.perf_counter()
    sources = float("nan")
    ttft = float("nan")
    async with client.stream("POST", url, json=body) as resp:
        async for line in resp.aiter_lines():  # read to the end, so the connection is reused
            if line == "event: sources":
                sources = time.perf_counter() - start
            if line == "event: delta" and ttft != ttft:
                ttft = time.perf_counter() - start
    if ttft != ttft:
        raise RuntimeError(f"no delta from {url}")
    return ttft, sources


async def bench_ttft(n: int) -> dict[str, float]:
    gw = start_gateway()
    tmp = tempfile.mkdtemp(prefix="cairn-bench-")
    qs = start_qs(gw, f"{tmp}/ttft.sqlite3", QS_CACHE_SIZE="0")
    try:
        docs = [
            json.loads(line)
            for line in (ROOT / "services/query/eval/documents.jsonl").read_text().splitlines()
        ]
        async with make_http_client(timeout_s=30) as client:
            for doc in docs:
                await client.post(f"{qs.url}/v1/documents", json=doc)
            question = "How many days of paid annual leave do Fernhill employees get?"  # the eval set's first
            search = (await client.post(f"{qs.url}/v1/search", json={"query": question})).json()["results"]
            chunks = [
                {"chunk_id": r["chunk_id"], "title": r["title"], "url": r["url"], "text": r["text"]}
                for r in search
            ]
            direct_body = {
                "prompt": question,
                "stream": True,
                "citations_required": True,
                "context_chunks": chunks,
            }
            qs_body = {"query": question, "stream": True}
            direct, via, sources = [], [], []
            for _ in range(10):  # warm up
                await first_delta(client, f"{gw.url}/v1/generate", direct_body)
                await first_delta(client, f"{qs.url}/v1/chat", qs_body)
            for _ in range(n):  # interleaved, so drift hits both alike
                direct.append((await first_delta(client, f"{gw.url}/v1/generate", direct_body))[0])
                t, s = await first_delta(client, f"{qs.url}/v1/chat", qs_body)
                via.append(t)
                sources.append(s)
    finally:
        qs.stop()
        gw.stop()
    d50, v50 = pct(direct, 0.5), pct(via, 0.5)
    relay = [v - s for v, s in zip(via, sources, strict=True)]
    return {
        # Half the interquartile range of the direct TTFT: a difference of medians below it is not resolved.
        "resolution": (pct(direct, 0.75) - pct(direct, 0.25)) / 2,
        "direct_p50": d50,
        "direct_p99": pct(direct, 0.99),
        "qs_p50": v50,
        "qs_p99": pct(via, 0.99),
        "added_incl_p50": v50 - d50,
        "sources_p50": pct(sources, 0.5),
        "added_excl_p50": pct(relay, 0.5) - d50,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--ttft-only", action="store_true", help="only part 3, QS's added time to first token"
    )
    args = parser.parse_args()
    if args.ttft_only:
        print_ttft(asyncio.run(bench_ttft(50 if args.quick else 200)))
        return 0
    sizes = [10_000] if args.quick else [10_000, 100_000]
    ing = bench_ingest(20 if args.quick else 100)
    print("### Ingest (real QS, toy embedder via the gateway)\n")
    print("| documents | chunks | chunks/s | documents/s |\n|---|---|---|---|")
    print(
        f"| {ing['docs']} | {ing['chunks']} | {ing['chunks_per_s']:.0f} | {ing['docs_per_s']:.1f} |\n",
        flush=True,
    )
    rows = [bench_search(n, 100 if args.quick else 300) for n in sizes]
    print("### Search latency in process (ms; 384-dim vectors, top 50 per list, top 5 fused)\n")
    has_vec = "sqlite_vec_p50" in rows[0]
    head = "| chunks | store build s | BM25 p50/p99 | numpy vectors p50/p99 | hybrid p50/p99 | hybrid+filter p50/p99 (same scope) |"
    print(head + (" sqlite-vec p50/p99 |" if has_vec else ""))
    print("|---" * (6 + has_vec) + "|")
    for r in rows:
        line = (
            f"| {r['chunks']:,} | {r['build_s']:.1f} | {r['bm25_p50']:.2f} / {r['bm25_p99']:.2f} | "
            f"{r['vector_p50']:.2f} / {r['vector_p99']:.2f} | {r['hybrid_p50']:.2f} / {r['hybrid_p99']:.2f} | "
            f"{r['hybrid_filtered_p50']:.2f} / {r['hybrid_filtered_p99']:.2f} |"
        )
        if has_vec:
            line += f" {r['sqlite_vec_p50']:.2f} / {r['sqlite_vec_p99']:.2f} |"
        print(line, flush=True)
    print_ttft(asyncio.run(bench_ttft(50 if args.quick else 200)))
    return 0


def print_ttft(t: dict[str, float]) -> None:
    print("\n### Time to first token, toy provider (ms)\n")
    print("| path | p50 | p99 |\n|---|---|---|")
    print(f"| gateway /v1/generate directly | {t['direct_p50']:.2f} | {t['direct_p99']:.2f} |")
    print(f"| QS /v1/chat (retrieval + relay) | {t['qs_p50']:.2f} | {t['qs_p99']:.2f} |")
    print(f"| added by QS, retrieval included | {t['added_incl_p50']:.2f} | |")
    print(f"| QS `sources` event (retrieval done) | {t['sources_p50']:.2f} | |")
    relay = t["added_excl_p50"]
    shown = f"{relay:.2f}"
    if abs(relay) < t["resolution"]:
        shown += f" (not resolved: the direct TTFT itself spreads ±{t['resolution']:.2f})"
    print(f"| added by QS after retrieval (the relay), p50 difference | {shown} | |")


if __name__ == "__main__":
    raise SystemExit(main())

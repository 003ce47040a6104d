"""`make eval`: retrieval and citation quality of the query service on the shipped evaluation set.

Starts a real gateway and a real query service on a fresh store, ingests services/query/eval/documents.jsonl,
asks every question in questions.jsonl, and prints one markdown table per provider:

- recall@5: share of the expected chunks found in the top 5 of /v1/search (mean over questions);
- parse rate: model answers whose output was parseable JSON (not MALFORMED_OUTPUT), over model calls;
- valid-citation rate: parseable answers whose citations all name retrieved chunks, over parseable answers;
- invalid citations at the client: cited ids that were not among the returned sources (must be 0);
- cites expected chunk: ok answers citing one of the expected chunks;
- fact in answer: ok answers containing the expected fact (case-insensitive), over answerable questions;
- fallback rate: answerable questions answered with status=fallback;
- NO_CONTEXT on negatives: unanswerable questions that got NO_CONTEXT without calling the model.

Usage: python scripts/eval.py [--providers toy,llamacpp] [--embed auto|toy|onnx] [--limit N]
The llamacpp provider (Gemma 3 270M) is skipped with a note when the gateway does not have it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from cairn_testing import ServerProcess, start_server

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT / "services" / "query" / "eval"
CITATION_CODES = {"MALFORMED_OUTPUT", "INVALID_CITATION", "MISSING_CITATIONS"}


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (EVAL_DIR / name).read_text().splitlines() if line.strip()]


def start_gateway(provider: str, embed: str) -> ServerProcess:
    env = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": provider,
        "LLM_EMBED_PROVIDER": embed,
        "LLM_TIMEOUT_MS": "180000",
        "LLM_FIRST_TOKEN_TIMEOUT_MS": "120000",
        "LLM_IDLE_TIMEOUT_MS": "60000",
        "LLM_QUEUE_SIZE": "64",
    }
    return start_server("eval-gateway", ["cairn_gateway"], env=env, health_path="/readyz", timeout_s=300)


def pick_embedder(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        start_gateway("toy", "onnx").stop()
        return "onnx"
    except RuntimeError:
        return "toy"


def provider_available(provider: str) -> bool:
    if provider == "toy":
        return True
    module = ROOT / "services" / "gateway" / "src" / "cairn_gateway" / "providers" / f"{provider}.py"
    return module.exists()


def evaluate(provider: str, embed: str, limit: int | None) -> dict[str, Any]:
    docs, questions = load("documents.jsonl"), load("questions.jsonl")
    if limit:
        questions = questions[:limit]
    gw = start_gateway(provider, embed)
    tmp = tempfile.mkdtemp(prefix="cairn-eval-")
    qs = start_server(
        "eval-query",
        ["cairn_query"],
        env={
            "QS_PORT": "{port}",
            "QS_GATEWAY_URL": gw.url,
            "QS_DB_PATH": f"{tmp}/eval.sqlite3",
            "QS_CACHE_SIZE": "0",
            "QS_GATEWAY_TIMEOUT_MS": "180000",
            "QS_FIRST_TOKEN_TIMEOUT_MS": "120000",
            "QS_EMBED_TIMEOUT_MS": "60000",
        },
        health_path="/readyz",
    )
    try:
        client = httpx.Client(base_url=qs.url, timeout=300)
        for doc in docs:
            client.post("/v1/documents", json=doc).raise_for_status()
        rows = [ask(client, q) for q in questions]
    finally:
        qs.stop()
        gw.stop()
    return summarise(provider, embed, rows)


def ask(client: httpx.Client, q: dict[str, Any]) -> dict[str, Any]:
    search = client.post("/v1/search", json={"query": q["question"], "top_k": 5}).json()
    top = [r["chunk_id"] for r in search["results"]]
    started = time.perf_counter()
    body = client.post("/v1/chat", json={"query": q["question"]}).json()
    latency = time.perf_counter() - started
    sources = {s["chunk_id"] for s in body["sources"]}
    cited = [c["chunk_id"] for c in body["citations"]]
    expected = q["chunk_ids"]
    return {
        "question": q["question"],
        "positive": bool(expected),
        "recall": len(set(expected) & set(top)) / len(expected) if expected else None,
        "status": body["status"],
        "reason": body["reason_code"],
        "called_model": body["reason_code"] != "NO_CONTEXT"
        and (body["status"] == "ok" or body["reason_code"] in CITATION_CODES),
        "invalid_at_client": sum(1 for c in cited if c not in sources),
        "cites_expected": bool(set(cited) & set(expected)),
        "fact": bool(q["fact"]) and body["status"] == "ok" and q["fact"].lower() in body["answer"].lower(),
        "answer": body["answer"],
        "latency_s": latency,
    }


def summarise(provider: str, embed: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    calls = [r for r in rows if r["called_model"]]
    parsed = [r for r in calls if r["reason"] != "MALFORMED_OUTPUT"]
    valid = [r for r in parsed if r["status"] == "ok"]
    ok = [r for r in pos if r["status"] == "ok"]
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "provider": provider,
        "embed": embed,
        "questions": len(pos),
        "negatives": len(neg),
        "recall@5": statistics.mean(r["recall"] for r in pos) if pos else 0.0,
        "parse_rate": len(parsed) / len(calls) if calls else 0.0,
        "valid_citation_rate": len(valid) / len(parsed) if parsed else 0.0,
        "invalid_at_client": sum(r["invalid_at_client"] for r in rows),
        "cites_expected": sum(r["cites_expected"] for r in ok) / len(ok) if ok else 0.0,
        "fact_rate": sum(r["fact"] for r in pos) / len(pos) if pos else 0.0,
        "fallback_rate": sum(r["status"] == "fallback" for r in pos) / len(pos) if pos else 0.0,
        "no_context_on_negatives": sum(r["reason"] == "NO_CONTEXT" for r in neg) / len(neg) if neg else 0.0,
        "model_calls": len(calls),
        "reasons": reasons,
        "mean_chat_s": statistics.mean(r["latency_s"] for r in rows) if rows else 0.0,
        "rows": rows,
    }


def table(results: list[dict[str, Any]]) -> str:
    metrics = [
        ("recall@5", "recall@5", "{:.3f}"),
        ("citation parse rate", "parse_rate", "{:.1%}"),
        ("valid-citation rate", "valid_citation_rate", "{:.1%}"),
        ("invalid citations reaching the client", "invalid_at_client", "{}"),
        ("ok answers citing an expected chunk", "cites_expected", "{:.1%}"),
        ("answers containing the expected fact", "fact_rate", "{:.1%}"),
        ("fallback rate", "fallback_rate", "{:.1%}"),
        ("NO_CONTEXT on unanswerable questions", "no_context_on_negatives", "{:.1%}"),
        ("model calls", "model_calls", "{}"),
        ("mean /v1/chat time (s)", "mean_chat_s", "{:.2f}"),
    ]
    head = "| metric | " + " | ".join(f"{r['provider']} (embed: {r['embed']})" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for label, key, fmt in metrics:
        lines.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results) + " |")
    lines.append("| fallback reasons | " + " | ".join(json.dumps(r["reasons"]) for r in results) + " |")
    n = results[0]
    return f"{n['questions']} answerable questions, {n['negatives']} unanswerable\n\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", default="toy,llamacpp")
    parser.add_argument("--embed", default="auto", choices=["auto", "toy", "onnx"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write every answer to this file")
    args = parser.parse_args()
    embed = pick_embedder(args.embed)
    results = []
    for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
        if not provider_available(provider):
            print(f"(skipped {provider}: the gateway has no such provider yet)\n", flush=True)
            continue
        print(f"evaluating {provider} with the {embed} embedder …", file=sys.stderr, flush=True)
        results.append(evaluate(provider, embed, args.limit))
    if not results:
        return 1
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

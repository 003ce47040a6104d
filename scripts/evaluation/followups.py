"""Two-turn follow-ups (issue 14): each asked as a conversation and as the same question standalone."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .ask import logged
from .facts import has_facts
from .stack import Stack


def _chat_outcome(body: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
    ok = body["status"] == "ok"
    cited = {c["chunk_id"] for c in body["citations"]}
    expected = set(q["chunk_ids"])
    return {
        "recall": len(expected & {s["chunk_id"] for s in body["sources"][:5]}) / len(expected),
        "fact": ok and has_facts(q, body["answer"]),
        "cites_expected": ok and bool(cited & expected),
        "status": body["status"],
        "reason": body["reason_code"],
        "answer": body["answer"],
    }


def ask_followup(stack: Stack, q: dict[str, Any]) -> dict[str, Any]:
    """The follow-up as a two-turn conversation, then the same question asked standalone."""
    client = stack.client
    stack.log.read()
    started = time.perf_counter()
    body = client.post("/v1/chat", json={"messages": q["messages"]}).json()
    latency = time.perf_counter() - started
    rewrites = logged(stack.log.read(), "followup_rewrite")
    rewrite = rewrites[-1] if rewrites else {}
    alone = client.post("/v1/chat", json={"query": q["standalone"]}).json()
    search = client.post("/v1/search", json={"query": q["standalone"], "top_k": 5}).json()
    top = {r["chunk_id"] for r in search["results"]}
    return {
        "question": q["question"],
        "standalone": q["standalone"],
        "rewritten": rewrite.get("rewritten", q["question"]),
        "by": rewrite.get("by", "none"),
        "model_rejected": rewrite.get("model_rejected"),
        "followup": _chat_outcome(body, q),
        "alone": _chat_outcome(alone, q),
        "search_recall_alone": len(set(q["chunk_ids"]) & top) / len(q["chunk_ids"]),
        "latency_s": latency,
    }


def summarise_followups(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"followups": 0, "followup_rows": []}

    def mean(side: str, key: str) -> float:
        return statistics.mean(float(r[side][key]) for r in rows)

    return {
        "followups": len(rows),
        "fu_recall": mean("followup", "recall"),
        "alone_recall": mean("alone", "recall"),
        "fu_fact": mean("followup", "fact"),
        "alone_fact": mean("alone", "fact"),
        "fu_right_doc": mean("followup", "cites_expected"),
        "alone_right_doc": mean("alone", "cites_expected"),
        "alone_search_recall": statistics.mean(r["search_recall_alone"] for r in rows),
        "by_model": sum(r["by"] == "model" for r in rows),
        "fu_p50_s": statistics.median(r["latency_s"] for r in rows),
        "followup_rows": rows,
    }


FOLLOWUP_METRICS = [
    ("recall@5 (expected chunk among the chat's sources)", "fu_recall", "alone_recall", "{:.3f}"),
    ("right fact", "fu_fact", "alone_fact", "{:.1%}"),
    ("right document cited", "fu_right_doc", "alone_right_doc", "{:.1%}"),
]


def followup_table(results: list[dict[str, Any]]) -> str:
    results = [r for r in results if r.get("followups")]
    if not results:
        return ""
    cols = " | ".join(f"{r['provider']} follow-up | {r['provider']} standalone" for r in results)
    lines = [f"| metric | {cols} |", "|---|" + "---|---|" * len(results)]
    for label, fu, alone, fmt in FOLLOWUP_METRICS:
        cells = " | ".join(f"{fmt.format(r[fu])} | {fmt.format(r[alone])}" for r in results)
        lines.append(f"| {label} | {cells} |")
    lines.append(
        "| recall@5 of /v1/search, the standalone question | "
        + " | ".join(f" | {r['alone_search_recall']:.3f}" for r in results)
        + " |"
    )
    lines.append(
        "| rewritten by the model (the rest: rules) | "
        + " | ".join(f"{r['by_model']} of {r['followups']} | " for r in results)
        + " |"
    )
    lines.append("| /v1/chat p50 (s) | " + " | ".join(f"{r['fu_p50_s']:.2f} | " for r in results) + " |")
    gaps = ", ".join(
        f"{r['provider']}: {r['alone_recall'] - r['fu_recall']:+.3f} "
        f"({'met' if r['alone_recall'] - r['fu_recall'] <= 0.05 else 'not met'})"
        for r in results
    )
    head = (
        f"{results[0]['followups']} two-turn follow-ups (QS_FOLLOWUP_REWRITE={results[0]['rewrite']}); "
        f"standalone minus follow-up recall@5, target <= 0.05: {gaps}"
    )
    rewrites = "\n".join(
        f"- {r['question']} -> {r['rewritten']} ({r['by']}"
        + (f"; model's text rejected: {r['model_rejected']}" if r["model_rejected"] else "")
        + f"; {'right fact' if r['followup']['fact'] else 'no fact: ' + str(r['followup']['reason'] or 'wrong')})"
        for r in results[-1]["followup_rows"]
    )
    return f"{head}\n\n" + "\n".join(lines) + f"\n\nRewrites ({results[-1]['provider']}):\n{rewrites}"

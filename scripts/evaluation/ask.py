"""One question to a running stack: /v1/search (recall), /v1/chat (the answer), and how QS decided."""

from __future__ import annotations

import json
import time
from typing import Any

from cairn_core import numbers, split_sentences, strip_markers

from .facts import has_facts
from .stack import Stack

CITATION_CODES = {"MALFORMED_OUTPUT", "INVALID_CITATION", "MISSING_CITATIONS"}
# What counts as declining to answer: nothing found, only the closest passages shown (middling evidence), or an
# answer that its sources did not support.
REFUSALS = {"NO_CONTEXT", "WEAK_EVIDENCE", "UNSUPPORTED_ANSWER"}


def logged(text: str, event: str) -> list[dict[str, Any]]:
    """QS's JSON log events named `event` in `text`."""
    marker = f'"{event}"'
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and marker in line]


def recall(q: dict[str, Any], hits: list[dict[str, Any]]) -> float | None:
    """Share of the expected chunks among `hits` where the question names chunks (the shipped set), else
    whether one of its documents is among them."""
    if not q["positive"]:
        return None
    if q.get("chunk_ids"):
        top = {h["chunk_id"] for h in hits}
        return len(set(q["chunk_ids"]) & top) / len(q["chunk_ids"])
    return float(bool(set(q["docs"]) & {h["document_id"] for h in hits}))


def passages_fact(q: dict[str, Any], body: dict[str, Any]) -> str | None:
    """For an answerable question shown the closest passages: "first" (the first passage holds the fact),
    "other" (a later one does), "none"; else None."""
    if not q["positive"] or body["reason_code"] != "WEAK_EVIDENCE":
        return None
    held = [has_facts(q, s.get("snippet") or s["text"]) for s in body["sources"]]
    return "first" if held[:1] == [True] else "other" if any(held) else "none"


def ask(stack: Stack, q: dict[str, Any]) -> dict[str, Any]:
    client = stack.client
    search = client.post("/v1/search", json={"query": q["question"], "top_k": 5}).json()
    stack.log.read()
    started = time.perf_counter()
    body = client.post("/v1/chat", json={"query": q["question"]}).json()
    latency = time.perf_counter() - started
    decided = logged(stack.log.read(), "evidence")
    sources = {s["chunk_id"]: s for s in body["sources"]}
    cited = [c["chunk_id"] for c in body["citations"]]
    cited_docs = {sources[c]["document_id"] for c in cited if c in sources}
    ok = body["status"] == "ok"
    cited_text = "\n".join(f"{sources[c]['title']}\n{sources[c]['text']}" for c in cited if c in sources)
    sentences = [" ".join(s.lower().split()) for s in split_sentences(body["answer"])]
    return {
        "question": q["question"],
        "type": q["type"],
        "split": q["split"],
        "positive": q["positive"],
        "docs": q["docs"],
        "recall": recall(q, search["results"]),
        "status": body["status"],
        "reason": body["reason_code"],
        # The name-masked cosine QS compared with QS_MIN_EVIDENCE (None: no embeddings, or no sentence).
        "match": decided[-1].get("match") if decided else None,
        "called_model": body["reason_code"] != "NO_CONTEXT"
        and (ok or body["reason_code"] in CITATION_CODES | {"UNSUPPORTED_ANSWER"}),
        "invalid_at_client": sum(1 for c in cited if c not in sources),
        "cites_expected": bool(cited_docs & set(q["docs"]))
        if not q.get("chunk_ids")
        else bool(set(cited) & set(q["chunk_ids"])),
        "fact": q["positive"] and ok and has_facts(q, body["answer"]),
        "refused": not ok and body["reason_code"] in REFUSALS,
        # The closest passages (WEAK_EVIDENCE) are not an answer, but a user reads them: does the first, or
        # any, hold the fact? Scored on the snippet the page shows (the passage's best sentences).
        "passages": passages_fact(q, body),
        # Inline markers ([leave:0]) are references, not claims: counted as the support check counts them.
        "unsupported_numbers": sorted(numbers(strip_markers(body["answer"])) - numbers(cited_text))
        if ok
        else [],
        "repeats": ok and len(sentences) != len(set(sentences)),
        "answer": body["answer"],
        "cited": cited,
        "latency_s": latency,
    }

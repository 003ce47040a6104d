"""From answers to numbers: the targets of issue 9, and each question's outcome (issue 22).

Every question ends in one of three outcomes, the same for every set:
- right: an answerable question answered (status ok) with its fact(s), or an unanswerable one refused;
- wrong, shown as an answer: status ok, and the text lacks the expected fact, or the question has no answer
  in the documents. This is what a user cannot tell from a right answer;
- not answered: any other fallback (refused although the documents answer, a timeout, ...), which the user
  sees as such.
"""

from __future__ import annotations

import statistics
from typing import Any

from .sets import ANSWERABLE_TYPES


def outcome(row: dict[str, Any], threshold: float | None = None) -> str:
    """right, wrong or declined; with `threshold`, as QS would have decided at QS_MIN_EVIDENCE=threshold
    (a run at -2 answers everything it can; below the threshold QS says NO_CONTEXT instead)."""
    ok = row["status"] == "ok"
    refused = row["refused"]
    if threshold is not None and row["match"] is not None and row["match"] < threshold:
        ok, refused = False, True
    if ok:
        return "right" if row["positive"] and row["fact"] else "wrong"
    return "right" if not row["positive"] and refused else "declined"


def _share(rows: list[dict[str, Any]], key: str) -> float | None:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else None


def wrong_shown(rows: list[dict[str, Any]]) -> float | None:
    return sum(outcome(r) == "wrong" for r in rows) / len(rows) if rows else None


def passages_summary(answerable: list[dict[str, Any]]) -> dict[str, Any]:
    """Answerable questions shown the closest passages instead of an answer, and how often what they show
    holds the fact: in the first passage, or in any."""
    shown = [r["passages"] for r in answerable if r.get("passages")]
    return {
        "passages_shown": len(shown),
        "passages_fact_first": shown.count("first") / len(shown) if shown else None,
        "passages_fact_any": (shown.count("first") + shown.count("other")) / len(shown) if shown else None,
    }


def summarise(provider: str, embed: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    calls = [r for r in rows if r["called_model"]]
    parsed = [r for r in calls if r["reason"] != "MALFORMED_OUTPUT"]
    of_type = {t: [r for r in pos if r["type"] == t] for t in ANSWERABLE_TYPES}
    lookalike_ok = [r for r in of_type["lookalike"] if r["status"] == "ok"]
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    latencies = sorted(r["latency_s"] for r in rows)
    return {
        "provider": provider,
        "embed": embed,
        "questions": len(pos),
        "negatives": len(neg),
        "counts": {t: len(v) for t, v in of_type.items()},
        "wrong_shown": wrong_shown(rows),
        "wrong_shown_answerable": wrong_shown(pos),
        "wrong_shown_unanswerable": wrong_shown(neg),
        "recall@5": statistics.mean(r["recall"] for r in pos) if pos else None,
        "parse_rate": len(parsed) / len(calls) if calls else None,
        "invalid_at_client": sum(r["invalid_at_client"] for r in rows),
        "fact_rate": _share(pos, "fact"),
        **{f"fact_{t}": _share(v, "fact") for t, v in of_type.items()},
        "lookalike_right_doc": _share(lookalike_ok, "cites_expected"),
        "refused_unanswerable": _share(neg, "refused"),
        **passages_summary(pos),
        "unsupported_numbers": sum(len(r["unsupported_numbers"]) for r in rows),
        "repeats": sum(bool(r["repeats"]) for r in rows),
        "fallback_rate": _share([{"f": r["status"] == "fallback"} for r in pos], "f"),
        "model_calls": len(calls),
        "reasons": reasons,
        "p50_chat_s": statistics.median(latencies) if latencies else 0.0,
        "p95_chat_s": latencies[max(0, round(0.95 * len(latencies)) - 1)] if latencies else 0.0,
        "groups": groups(rows),
        "rows": rows,
    }


def group(rows: list[dict[str, Any]], threshold: float | None = None) -> dict[str, Any]:
    """Counts and shares of each outcome, with recall@5 over the answerable ones."""
    outcomes = [outcome(r, threshold) for r in rows]
    recalls = [r["recall"] for r in rows if r["recall"] is not None]
    n = len(rows)
    return {
        "n": n,
        **{k: outcomes.count(k) for k in ("right", "wrong", "declined")},
        **{f"{k}_rate": outcomes.count(k) / n if n else None for k in ("right", "wrong", "declined")},
        "recall@5": statistics.mean(recalls) if recalls else None,
    }


def groups(rows: list[dict[str, Any]], threshold: float | None = None) -> dict[str, dict[str, Any]]:
    """By half and type: 'tune/direct', ..., 'tune/all', 'heldout/...', 'all/...'."""
    others = sorted({r["type"] for r in rows} - {*ANSWERABLE_TYPES, "unanswerable"})
    out = {}
    for half in ("tune", "heldout", "all"):
        in_half = [r for r in rows if half in ("all", r["split"])]
        for kind in (*ANSWERABLE_TYPES, *others, "unanswerable", "all"):
            of_kind = [r for r in in_half if kind in ("all", r["type"])]
            if of_kind:
                out[f"{half}/{kind}"] = group(of_kind, threshold)
    return out

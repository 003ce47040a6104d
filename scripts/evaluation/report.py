"""Markdown tables of one evaluation: the targets per provider, then each outcome by half and type."""

from __future__ import annotations

import json
from typing import Any

METRICS = [
    ("wrong but shown as an answer, all questions", "wrong_shown", "{:.1%}", "lowest"),
    ("  of answerable questions (ok, fact missing)", "wrong_shown_answerable", "{:.1%}", ""),
    ("  of unanswerable questions (ok at all)", "wrong_shown_unanswerable", "{:.1%}", ""),
    ("right fact, all answerable questions", "fact_rate", "{:.1%}", ">= 75%"),
    ("right fact, direct questions", "fact_direct", "{:.1%}", ""),
    ("right fact, paraphrased questions", "fact_paraphrase", "{:.1%}", ">= 60%"),
    ("right fact, look-alike documents", "fact_lookalike", "{:.1%}", ""),
    ("right document cited, look-alike ok answers", "lookalike_right_doc", "{:.1%}", ">= 90%"),
    ("unanswerable questions refused or NO_CONTEXT", "refused_unanswerable", "{:.1%}", ">= 90%"),
    ("answerable questions shown the closest passages (WEAK_EVIDENCE)", "passages_shown", "{}", ""),
    ("  the first passage holds the fact", "passages_fact_first", "{:.1%}", ""),
    ("  one of the passages holds it", "passages_fact_any", "{:.1%}", ""),
    ("numbers in ok answers absent from the cited chunks", "unsupported_numbers", "{}", "0"),
    ("answers that repeat a sentence", "repeats", "{}", "0"),
    ("invalid citations reaching the client", "invalid_at_client", "{}", "0"),
    ("retrieval recall@5", "recall@5", "{:.3f}", ">= 0.95"),
    ("citation parse rate (model calls)", "parse_rate", "{:.1%}", ""),
    ("fallback rate, answerable questions", "fallback_rate", "{:.1%}", ""),
    ("model calls", "model_calls", "{}", ""),
    ("/v1/chat p50 (s)", "p50_chat_s", "{:.2f}", ""),
    ("/v1/chat p95 (s)", "p95_chat_s", "{:.2f}", ""),
]


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def table(results: list[dict[str, Any]]) -> str:
    n = results[0]
    if not n["questions"] and not n["negatives"]:
        return ""
    head = (
        "| metric | target | " + " | ".join(f"{r['provider']} (embed: {r['embed']})" for r in results) + " |"
    )
    lines = [head, "|---|---|" + "---|" * len(results)]
    for label, key, fmt, target in METRICS:
        cells = [_cell(r[key], fmt) for r in results]
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    lines.append("| fallback reasons | | " + " | ".join(json.dumps(r["reasons"]) for r in results) + " |")
    counts = ", ".join(f"{v} {k}" for k, v in n["counts"].items())
    return f"{n['questions']} answerable questions ({counts}), {n['negatives']} unanswerable\n\n" + "\n".join(
        lines
    )


def halves_table(results: list[dict[str, Any]]) -> str:
    """Right / wrong shown / not answered, by half and question type, one column group per provider."""
    cols = " | ".join(f"{r['provider']}: right | wrong shown | not answered | recall@5" for r in results)
    lines = [f"| half | type | n | {cols} |", "|---|---|---|" + "---|---|---|---|" * len(results)]
    for key, g in results[0]["groups"].items():
        half, kind = key.split("/")
        cells = []
        for r in results:
            x = r["groups"][key]
            cells.append(
                f"{x['right_rate']:.1%} | **{x['wrong_rate']:.1%}** | {x['declined_rate']:.1%} | "
                + _cell(x["recall@5"], "{:.3f}")
            )
        label = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {half} | {label} | {g['n']} | " + " | ".join(cells) + " |")
    return (
        "Outcomes by half and type (right: the fact, or a refusal of an unanswerable question; wrong shown: "
        "status ok without the fact, or any ok answer to an unanswerable question; not answered: every other "
        "fallback)\n\n" + "\n".join(lines)
    )

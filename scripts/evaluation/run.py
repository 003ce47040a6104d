"""One set on one provider: start the stack, ingest, ask every question, summarise."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .ask import ask
from .followups import ask_followup, summarise_followups
from .score import summarise
from .sets import EvalSet
from .stack import Stack, ingest, running


@contextmanager
def session(evalset: EvalSet, provider: str, embed: str, qs_env: dict[str, str]) -> Iterator[Stack]:
    """A running stack with the set's documents ingested."""
    print(
        f"{evalset.name}: {provider} with the {embed} embedder, {evalset.documents} documents, {qs_env} …",
        file=sys.stderr,
        flush=True,
    )
    with running(provider, embed, qs_env) as stack:
        ingest(stack.client, evalset)
        yield stack


def ask_all(stack: Stack, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [ask(stack, q) for q in questions]


def evaluate(
    evalset: EvalSet,
    provider: str,
    embed: str,
    *,
    qs_env: dict[str, str] | None = None,
    limit: int | None = None,
    split: str | None = None,
    rewrite: str = "auto",
    followups_only: bool = False,
) -> dict[str, Any]:
    questions = [] if followups_only else evalset.questions
    if split:
        questions = [q for q in questions if q["split"] == split]
    if limit:
        questions = questions[:limit]
    followups = evalset.followups if split is None else []
    env = {"QS_FOLLOWUP_REWRITE": rewrite, **(qs_env or {})}
    with session(evalset, provider, embed, env) as stack:
        rows = ask_all(stack, questions)
        follow = [ask_followup(stack, q) for q in followups]
    return {
        **summarise(provider, embed, rows),
        **summarise_followups(follow),
        "set": evalset.name,
        "rewrite": rewrite,
        "qs_env": env,
    }

"""Evaluation sets: the shipped one, the real-document one, and a team's own folder of documents.

A set is documents (JSON rows, or files uploaded as a user would) plus questions in one JSONL format
(docs/eval.md, "Bring your own set"). Every question is read into the same shape here: its type, the
documents that answer it (none: unanswerable), what a right answer holds, and its half (tune or heldout).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pydocs, readmes

ROOT = Path(__file__).resolve().parents[2]
EVAL_DIR = ROOT / "services" / "query" / "eval"
# What QS parses (services/query parsing.py): the same files a user uploads.
UPLOADABLE = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf"}
ANSWERABLE_TYPES = ("direct", "paraphrase", "lookalike")


@dataclass
class EvalSet:
    name: str
    questions: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)  # POST /v1/documents as JSON
    files: dict[str, Path] = field(default_factory=dict)  # document id -> file, uploaded as multipart
    followups: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @property
    def documents(self) -> int:
        return len(self.rows) + len(self.files)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not JSON: {exc}") from None
    return rows


def document_id(name: str) -> str:
    """A file's document id: its path under the folder, in the characters QS allows (at most 64)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[-64:]


def _expected_docs(q: dict[str, Any], ids: set[str] | None) -> list[str]:
    doc = q.get("doc")
    docs = [doc] if isinstance(doc, str) else list(doc or [])
    docs = [document_id(d) for d in docs]
    docs += [c.rsplit(":", 1)[0] for c in q.get("chunk_ids") or []]
    if ids is not None and (unknown := [d for d in docs if d not in ids]):
        raise SystemExit(f"question {q['question']!r} names documents that are not in the set: {unknown}")
    return sorted(set(docs))


def prepare(rows: list[dict[str, Any]], ids: set[str] | None) -> list[dict[str, Any]]:
    """Questions in one shape; a question without `split` gets one by alternating within its type."""
    seen: dict[str, int] = {}
    out = []
    for q in rows:
        if not q.get("question"):
            raise SystemExit(f"a question without 'question': {q}")
        docs = _expected_docs(q, ids)
        kind = q.get("type") or ("direct" if docs else "unanswerable")
        n = seen[kind] = seen.get(kind, -1) + 1
        split = q.get("split") or ("tune" if n % 2 == 0 else "heldout")
        if split not in ("tune", "heldout"):
            raise SystemExit(f"split must be tune or heldout: {q}")
        if docs and not (q.get("facts") or q.get("fact") or q.get("fact_regex")):
            raise SystemExit(f"an answerable question needs 'facts', 'fact' or 'fact_regex': {q}")
        out.append({**q, "type": kind, "docs": docs, "positive": bool(docs), "split": split})
    return out


def shipped() -> EvalSet:
    rows = read_jsonl(EVAL_DIR / "documents.jsonl")
    questions = read_jsonl(EVAL_DIR / "questions.jsonl")
    ids = {r["id"] for r in rows}
    return EvalSet(
        name="shipped",
        rows=rows,
        questions=prepare([q for q in questions if q["type"] != "followup"], ids),
        followups=[q for q in questions if q["type"] == "followup"],
        note="services/query/eval: 32 + 24 documents of fictional companies, written for Cairn",
    )


def real() -> EvalSet:
    rows = pydocs.documents()
    questions = read_jsonl(EVAL_DIR / "pydocs" / "questions.jsonl")
    return EvalSet(
        name="pydocs",
        rows=rows,
        questions=prepare(questions, {r["id"] for r in rows}),
        note=f"Python {pydocs.python_version()} Language Reference texts (pydoc_data.topics), not written for Cairn",
    )


def package_readmes() -> EvalSet:
    files = readmes.files()
    return EvalSet(
        name="readmes",
        files=files,
        questions=prepare(read_jsonl(EVAL_DIR / "readmes" / "questions.jsonl"), set(files)),
        note=f"the READMEs of {len(files)} installed packages (their PyPI long descriptions), not written for Cairn",
    )


def folder(docs: Path, questions: Path) -> EvalSet:
    """A team's own set: every uploadable file under `docs`, and a questions JSONL file."""
    files = {
        document_id(str(p.relative_to(docs))): p
        for p in sorted(docs.rglob("*"))
        if p.is_file() and p.suffix.lower() in UPLOADABLE
    }
    if not files:
        raise SystemExit(f"no {', '.join(sorted(UPLOADABLE))} files under {docs}")
    return EvalSet(
        name=docs.name or str(docs),
        files=files,
        questions=prepare(read_jsonl(questions), set(files)),
        note=f"{len(files)} files under {docs}, questions from {questions}",
    )


def named(name: str) -> EvalSet:
    sets = {"shipped": shipped, "pydocs": real, "readmes": package_readmes}
    if name not in sets:
        raise SystemExit(f"unknown set {name!r}: one of {', '.join(sets)}, or --docs DIR --questions FILE")
    return sets[name]()

"""The evaluation's scoring rules (scripts/evaluation): pure functions, no servers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from evaluation import calibrate, pydocs, sets  # noqa: E402
from evaluation.facts import has_facts  # noqa: E402
from evaluation.score import outcome  # noqa: E402


def row(positive: bool, status: str = "ok", fact: bool = False, match: float | None = 0.5) -> dict:
    return {
        "positive": positive,
        "status": status,
        "fact": fact,
        "refused": status != "ok",
        "match": match,
        "type": "direct" if positive else "unanswerable",
        "split": "tune",
        "recall": 1.0 if positive else None,
    }


def test_facts_ignore_case_quotes_spacing_and_wrapped_hyphens() -> None:
    q = {"facts": ["-1**2 results in -1", "post-mortem"]}
    assert has_facts(q, 'Thus "-1**2"  results in\n"-1". After post- mortem debugging')
    assert not has_facts(q, '"-1**2" results in "-1".')  # every fact is needed


def test_fact_regex_and_the_shipped_single_fact() -> None:
    assert has_facts({"fact_regex": r"last (one given|value)"}, "the value will be the LAST one given")
    assert has_facts({"fact": "27"}, "You get 27 days.")
    assert not has_facts({}, "anything")


def test_an_ok_answer_without_the_fact_or_to_an_unanswerable_question_is_wrong_shown() -> None:
    assert outcome(row(True, fact=True)) == "right"
    assert outcome(row(True, fact=False)) == "wrong"
    assert outcome(row(False)) == "wrong"
    assert outcome(row(False, status="fallback")) == "right"
    assert outcome(row(True, status="fallback")) == "declined"


def test_replaying_a_threshold_refuses_below_it_and_keeps_the_rest() -> None:
    assert outcome(row(False, match=0.40), threshold=0.45) == "right"
    assert outcome(row(True, fact=True, match=0.40), threshold=0.45) == "declined"
    assert outcome(row(True, fact=True, match=0.50), threshold=0.45) == "right"
    assert outcome(row(True, fact=True, match=None), threshold=0.45) == "right"  # no embeddings: no gate


def test_the_chosen_threshold_is_the_middle_of_the_best_plateau() -> None:
    rows = [row(True, fact=True, match=0.60), row(False, match=0.50), row(False, match=0.30)]
    points = calibrate.sweep(rows, calibrate.thresholds(0.2, 0.7, 0.1))
    # 0.2, 0.3: 1 right, 2 wrong; 0.4, 0.5: 2 right, 1 wrong; 0.6: 3 right; 0.7: 2 right, 0 wrong
    assert [p["right"] - p["wrong"] for p in points] == [-1, -1, 1, 1, 3, 2]
    assert calibrate.choose(points, wrong_cost=1.0)["threshold"] == 0.6


def test_questions_without_a_split_alternate_within_their_type() -> None:
    rows = [
        {"question": "a", "doc": "x", "facts": ["1"]},
        {"question": "b"},
        {"question": "c", "doc": "x", "facts": ["2"]},
        {"question": "d", "doc": "x", "facts": ["3"], "split": "tune"},
    ]
    out = sets.prepare(rows, {"x"})
    assert [(q["type"], q["split"]) for q in out] == [
        ("direct", "tune"),
        ("unanswerable", "tune"),
        ("direct", "heldout"),
        ("direct", "tune"),
    ]


def test_a_question_naming_a_missing_document_or_without_facts_is_refused() -> None:
    with pytest.raises(SystemExit):
        sets.prepare([{"question": "a", "doc": "nope", "facts": ["1"]}], {"x"})
    with pytest.raises(SystemExit):
        sets.prepare([{"question": "a", "doc": "x"}], {"x"})


def test_a_folder_set_names_files_by_their_path(tmp_path: Path) -> None:
    (tmp_path / "docs" / "policies").mkdir(parents=True)
    (tmp_path / "docs" / "policies" / "leave.md").write_text("# Leave\n\n27 days.")
    (tmp_path / "docs" / "notes.bin").write_bytes(b"\0")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Leave?", "doc": "policies/leave.md", "facts": ["27"]}))
    s = sets.folder(tmp_path / "docs", questions)
    assert list(s.files) == ["policies-leave.md"]
    assert s.questions[0]["docs"] == ["policies-leave.md"]


def test_every_real_question_names_a_built_document_and_its_facts_are_in_it() -> None:
    s = sets.real()
    ids = {d["id"] for d in pydocs.documents()}
    assert len(ids) >= 50 and len(s.questions) >= 80
    assert all(set(q["docs"]) <= ids for q in s.questions)
    path = ROOT / "services" / "query" / "eval" / "pydocs" / "make_set.py"
    spec = importlib.util.spec_from_file_location("pydocs_make_set", path)
    assert spec and spec.loader
    make_set = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_set)
    make_set.check(make_set.rows())  # raises SystemExit when a fact is not in its document
    unanswerable = [q for q in s.questions if not q["positive"]]
    assert 0.15 <= len(unanswerable) / len(s.questions) <= 0.25


def test_the_closest_passages_are_scored_on_what_the_page_shows() -> None:
    from evaluation.ask import passages_fact
    from evaluation.score import passages_summary

    q = {"positive": True, "facts": ["StopIteration"]}
    weak = {"reason_code": "WEAK_EVIDENCE"}
    first = {
        **weak,
        "sources": [{"snippet": "raises StopIteration.", "text": "…"}, {"snippet": "x", "text": "x"}],
    }
    later = {
        **weak,
        "sources": [{"snippet": "x", "text": "StopIteration"}, {"snippet": "StopIteration", "text": ""}],
    }
    missing = {**weak, "sources": [{"snippet": "x", "text": "x StopIteration"}]}
    assert passages_fact(q, first) == "first"
    assert passages_fact(q, later) == "other"  # the snippet counts, not the chunk's text behind it
    assert passages_fact(q, missing) == "none"
    assert passages_fact(q, {"reason_code": "NO_CONTEXT", "sources": []}) is None
    assert passages_fact({**q, "positive": False}, first) is None
    rows = [{"passages": p} for p in ("first", "other", "none", None)]
    assert passages_summary(rows) == {
        "passages_shown": 3,
        "passages_fact_first": pytest.approx(1 / 3),
        "passages_fact_any": pytest.approx(2 / 3),
    }


def test_the_eval_finds_every_provider_the_gateway_catalogues() -> None:
    # It looked for providers/<name>.py, and skipped llamacpp once that became a package.
    from evaluation.stack import provider_available

    assert provider_available("llamacpp") and provider_available("toy")
    assert not provider_available("no-such-provider")


def test_every_readme_question_is_answered_by_its_document_as_installed() -> None:
    # The READMEs come from the installed packages: an upgrade that rewords one must fail here, not quietly
    # turn a right answer into a "wrong" one in the eval.
    readmes = sets.named("readmes")
    assert readmes.documents == 30 and len(readmes.questions) == 56
    texts = {doc_id: path.read_text() for doc_id, path in readmes.files.items()}
    answerable = [q for q in readmes.questions if q["positive"]]
    assert len(answerable) == 47 and {q["split"] for q in answerable} == {"tune", "heldout"}
    for q in answerable:
        assert has_facts(q, texts[q["docs"][0]]), q["question"]

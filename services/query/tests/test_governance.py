"""Governance against real QS and gateway processes: every rule kind with pass, warn and reject, hot reload,
a refused policy file, audit records for ok, fallback and warned answers, tampering, retention, fail-closed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_query.store import SQLiteStore
from cairn_testing import ServerProcess, wait_for

from .conftest import ADMIN, generations, sse, start_gateway, start_qs

DOCS = [
    {
        "id": "leave",
        "title": "Leave policy",
        "text": "Employees get 25 days of paid leave per year. Questions about leave go to hr@example.com.",
    },
    {
        "id": "vpn",
        "title": "VPN setup",
        "text": "Install the WireGuard client and import the profile from the IT portal to connect to the VPN.",
    },
    {
        "id": "parking",
        "title": "Parking",
        "text": "Anyone who parks in the director's spot is a stupid idiot and will be towed.",
    },
]
LEAVE = "How many days of paid leave do employees get?"
VPN = "How do I connect to the VPN?"
PARKING = "What happens to cars parked in the director's spot?"

# One rule per kind that fires on the question asked with it; `body` is the rest of the chat request.
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "length": ("length", {"max_chars": 10}, {"query": LEAVE}),
    "toxicity": ("toxicity", {"threshold": 0.9, "applies_to": ["answer"]}, {"query": PARKING}),
    # Without citations, the toy model writes words of its own: nothing in the sources backs them.
    "support": ("support", {}, {"query": LEAVE, "citations_required": False}),
    "relevance": ("relevance", {"min_similarity": 0.99}, {"query": LEAVE}),
    "pii": ("pii", {"types": ["email"]}, {"query": "Where do questions about leave go?"}),
    "blocked_terms": ("blocked_terms", {"terms": ["wireguard"]}, {"query": VPN}),
}


def policy_yaml(*rules: dict[str, Any]) -> str:
    lines = ["version: 1", "rules:"]
    for rule in rules:
        first = True
        for key, value in rule.items():
            text = "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else value
            lines.append(f"  {'- ' if first else '  '}{key}: {text}")
            first = False
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gateway() -> Iterator[ServerProcess]:
    srv = start_gateway()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(policy_yaml())
    return path


@pytest.fixture(scope="module")
def qs(
    gateway: ServerProcess, policy_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    srv = start_qs(
        gateway.url,
        tmp_path_factory.mktemp("qs") / "qs.sqlite3",
        QS_POLICY_FILE=str(policy_path),
        QS_POLICY_WATCH_S="0.2",
        QS_CACHE_SIZE="0",  # every question reaches the model, so each answer is the rules' to judge
    )
    for doc in DOCS:
        assert httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20).status_code in (200, 201)
    yield srv
    srv.stop()


def use_policy(qs: ServerProcess, path: Path, *rules: dict[str, Any]) -> None:
    path.write_text(policy_yaml(*rules))
    resp = httpx.post(f"{qs.url}/admin/policy/reload", headers=ADMIN, timeout=30)
    assert resp.status_code == 200, resp.text
    assert [r["name"] for r in resp.json()["rules"]] == [r["name"] for r in rules]


def chat(qs: ServerProcess, **body: Any) -> httpx.Response:
    return httpx.post(f"{qs.url}/v1/chat", json=body, timeout=30)


def audit_of(qs: ServerProcess, request_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{qs.url}/admin/audit", params={"request_id": request_id}, headers=ADMIN, timeout=10)
    records = resp.json()["records"]
    assert len(records) == 1, records
    return dict(records[0])


@pytest.mark.parametrize("action", ["pass", "warn", "reject"])
@pytest.mark.parametrize("kind", list(CASES))
def test_each_rule_kind_with_each_action(
    qs: ServerProcess, policy_path: Path, kind: str, action: str
) -> None:
    rule_kind, params, body = CASES[kind]
    name = f"{kind}-{action}"
    use_policy(qs, policy_path, {"name": name, "kind": rule_kind, "action": action, **params})
    resp = chat(qs, **body)
    answer = resp.json()
    record = audit_of(qs, answer["request_id"])
    assert {"rule": name, "kind": rule_kind, "action": action, "target": "answer"} in record["rules"]
    if action == "reject":
        assert answer["status"] == "fallback" and answer["reason_code"] == "POLICY_REJECTED"
        assert answer["policy_rule"] == name and name in answer["message"]
        assert answer["sources"], "a withheld answer still leaves the search results"
        assert record["outcome"] == "fallback" and record["reason_code"] == "POLICY_REJECTED"
        assert record["withheld"] and record["rule"] == name
        return
    assert answer["status"] == "ok" and answer["reason_code"] is None
    if action == "warn":
        assert [w["rule"] for w in answer["warnings"]] == [name] and answer["warnings"][0]["message"]
        assert record["outcome"] == "warn"
    else:
        assert answer["warnings"] == [] and record["outcome"] == "ok"
    assert record["answer"] == answer["answer"]


def test_a_rule_that_finds_nothing_leaves_the_answer_alone(qs: ServerProcess, policy_path: Path) -> None:
    use_policy(
        qs, policy_path, {"name": "no-vpn", "kind": "blocked_terms", "action": "reject", "terms": ["vpn"]}
    )
    answer = chat(qs, query=LEAVE).json()
    assert answer["status"] == "ok" and "25 days" in answer["answer"] and answer["warnings"] == []
    assert audit_of(qs, answer["request_id"])["rules"] == []


def test_a_rejected_question_never_reaches_the_model(
    qs: ServerProcess, gateway: ServerProcess, policy_path: Path
) -> None:
    use_policy(
        qs, policy_path, {"name": "rude", "kind": "toxicity", "action": "reject", "applies_to": ["question"]}
    )
    before = generations(gateway)
    answer = chat(qs, query="Why is this stupid damn leave policy so shit?").json()
    assert answer["status"] == "fallback" and answer["policy_rule"] == "rude"
    assert generations(gateway) == before
    chat(qs, query=LEAVE)  # the count does move for a question that is let through
    assert generations(gateway) == before + 1
    record = audit_of(qs, answer["request_id"])
    assert (
        record["rules"][0]["target"] == "question" and record["model"] is None and record["withheld"] is None
    )


def test_pii_redaction_in_answers_and_in_the_audited_question(qs: ServerProcess, policy_path: Path) -> None:
    use_policy(qs, policy_path, {"name": "pii", "kind": "pii", "action": "warn", "redact": "true"})
    question = "Where do questions about leave go? I am jo@corp.example."
    answer = chat(qs, query=question).json()
    assert (
        answer["status"] == "ok"
        and "hr@example.com" not in answer["answer"]
        and "[EMAIL]" in answer["answer"]
    )
    record = audit_of(qs, answer["request_id"])
    assert "jo@corp.example" not in record["question"] and "[EMAIL]" in record["question"]
    assert "hr@example.com" not in str(record)
    # The stream draws the text as it comes; the redacted text follows as one `redacted` event before `done`.
    events = sse(chat(qs, query=question, stream=True).text)
    names = [n for n, _ in events]
    # One warning for the question's address, one for the answer's.
    assert names[-4:] == ["redacted", "warning", "warning", "done"]
    assert "[EMAIL]" in events[-4][1]["text"] and "hr@example.com" not in events[-4][1]["text"]
    assert events[-3][1]["rule"] == events[-2][1]["rule"] == "pii"


def test_streams_warn_before_done_and_a_rejection_discards_the_drawn_answer(
    qs: ServerProcess, policy_path: Path
) -> None:
    use_policy(qs, policy_path, {"name": "short", "kind": "length", "action": "warn", "max_chars": 10})
    events = sse(chat(qs, query=LEAVE, stream=True).text)
    assert [n for n, _ in events][-2:] == ["warning", "done"] and events[-1][1]["status"] == "ok"
    assert events[-2][1] == {"rule": "short", "message": "The answer is longer than 10 characters."}
    use_policy(qs, policy_path, {"name": "short", "kind": "length", "action": "reject", "max_chars": 10})
    resp = chat(qs, query=LEAVE, stream=True)
    events = sse(resp.text)
    names = [n for n, _ in events]
    assert "delta" in names and names[-2:] == ["fallback", "done"]
    fallback, done = events[-2][1], events[-1][1]
    assert fallback["discard_answer"] is True and fallback["policy_rule"] == "short"
    assert fallback["reason_code"] == done["reason_code"] == "POLICY_REJECTED"
    record = audit_of(qs, resp.headers["x-request-id"])
    assert record["outcome"] == "fallback" and "25 days" in record["withheld"]


def test_a_broken_policy_is_refused_with_its_line_and_the_old_one_stays(
    qs: ServerProcess, policy_path: Path
) -> None:
    use_policy(qs, policy_path, {"name": "short", "kind": "length", "action": "warn", "max_chars": 10})
    for broken, line, words in [
        (
            policy_yaml(
                {"name": "x", "kind": "length", "action": "warn", "max_chars": 10},
                {"name": "y", "kind": "toxic", "action": "warn"},
            ),
            8,
            "unknown rule kind 'toxic'",
        ),
        (
            policy_yaml({"name": "x", "kind": "relevance", "action": "warn", "min_similarity": 7}),
            6,
            "min_similarity",
        ),
        (policy_yaml({"name": "x", "kind": "length", "action": "block", "max_chars": 10}), 5, "action"),
        ("version: 1\nrules:\n  - name: [x\n", 4, "not valid YAML"),
    ]:
        policy_path.write_text(broken)
        resp = httpx.post(f"{qs.url}/admin/policy/reload", headers=ADMIN, timeout=30)
        assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST"
        assert f"line {line}" in resp.json()["message"] and words in resp.json()["message"], resp.json()
        policy = httpx.get(f"{qs.url}/admin/policy", headers=ADMIN).json()
        assert [r["name"] for r in policy["rules"]] == ["short"]
        assert chat(qs, query=LEAVE).json()["warnings"][0]["rule"] == "short"


# Files that once gave 500 (KeyError, TypeError, RecursionError) instead of a refusal.
NOT_TEXT_KEYS = [
    ("1: x\n", 1, "a key must be text, not '1'"),
    ("null: x\n", 1, "a key must be text, not 'null'"),
    ("version: 1\ntrue: x\n", 2, "a key must be text, not 'true'"),
    ("rules: []\nfoo: 1\n2: y\n", 3, "a key must be text, not '2'"),  # text and number keys together
    ("rules:\n  - name: a\n    kind: length\n    action: warn\n    1: 3\n", 5, "a key must be text"),
]


def test_a_policy_with_keys_that_are_not_text_or_nested_too_deep_is_refused_with_its_line(
    qs: ServerProcess, policy_path: Path
) -> None:
    use_policy(qs, policy_path, {"name": "short", "kind": "length", "action": "warn", "max_chars": 10})
    deep = ("rules: " + "[" * 3000 + "]" * 3000 + "\n", None, "nested too deeply")
    for broken, line, words in [*NOT_TEXT_KEYS, deep]:
        policy_path.write_text(broken)
        resp = httpx.post(f"{qs.url}/admin/policy/reload", headers=ADMIN, timeout=30)
        assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST", resp.text
        assert words in resp.json()["message"], resp.json()
        assert line is None or f"line {line}:" in resp.json()["message"], resp.json()
        assert [r["name"] for r in httpx.get(f"{qs.url}/admin/policy", headers=ADMIN).json()["rules"]] == [
            "short"
        ]


def test_the_watch_outlives_a_broken_policy_file_and_logs_it(qs: ServerProcess, policy_path: Path) -> None:
    use_policy(qs, policy_path, {"name": "first", "kind": "length", "action": "pass", "max_chars": 10})
    for broken, _, _ in NOT_TEXT_KEYS[:2]:
        policy_path.write_text(broken)
        time.sleep(0.6)  # the watch (every 0.2 s) reads it
    assert "a key must be text" in qs.log_text() and "policy_refused" in qs.log_text()
    policy_path.write_text(
        policy_yaml({"name": "after", "kind": "length", "action": "warn", "max_chars": 5000})
    )
    wait_for(
        lambda: (
            [r["name"] for r in httpx.get(f"{qs.url}/admin/policy", headers=ADMIN).json()["rules"]]
            == ["after"]
        ),
        "the watch to load the valid file written after the broken ones",
        10,
        0.1,
    )


def test_the_policy_file_is_watched(qs: ServerProcess, policy_path: Path) -> None:
    use_policy(qs, policy_path, {"name": "first", "kind": "length", "action": "pass", "max_chars": 10})
    policy_path.write_text(
        policy_yaml({"name": "second", "kind": "length", "action": "warn", "max_chars": 5000})
    )
    wait_for(
        lambda: (
            [r["name"] for r in httpx.get(f"{qs.url}/admin/policy", headers=ADMIN).json()["rules"]]
            == ["second"]
        ),
        "the watched policy file to be reloaded",
        10,
        0.1,
    )


def test_audit_records_ok_fallback_and_warned_answers(qs: ServerProcess, policy_path: Path) -> None:
    use_policy(
        qs, policy_path, {"name": "vpn", "kind": "blocked_terms", "action": "warn", "terms": ["wireguard"]}
    )
    headers = {"X-Cairn-Owner": "key:abc123"}
    ok = httpx.post(f"{qs.url}/v1/chat", json={"query": LEAVE}, headers=headers, timeout=30).json()
    warned = chat(qs, query=VPN).json()
    fallback = chat(qs, query="Zebra quasar xylophone?").json()
    assert (ok["status"], warned["status"], fallback["status"]) == ("ok", "ok", "fallback")
    record = audit_of(qs, ok["request_id"])
    assert record["outcome"] == "ok" and record["reason_code"] is None and record["key_id"] == "key:abc123"
    assert record["question"] == LEAVE and record["answer"] == ok["answer"]
    assert record["cited"] == ["leave:0"] and "leave:0" in record["retrieved"]
    assert record["model"] and record["provider"] == "toy" and record["latency_ms"] > 0
    assert record["completion_tokens"] > 0 and len(record["trace_id"]) == 32
    assert audit_of(qs, warned["request_id"])["outcome"] == "warn"
    record = audit_of(qs, fallback["request_id"])
    assert record["outcome"] == "fallback" and record["reason_code"] == "NO_CONTEXT" and record["cited"] == []
    listed = httpx.get(f"{qs.url}/admin/audit", params={"outcome": "warn"}, headers=ADMIN).json()["records"]
    assert warned["request_id"] in {r["request_id"] for r in listed}
    assert all(r["outcome"] == "warn" for r in listed)
    export = httpx.get(f"{qs.url}/admin/audit", params={"format": "jsonl"}, headers=ADMIN)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert ok["request_id"] in export.text and len(export.text.splitlines()) >= 3
    assert httpx.get(f"{qs.url}/admin/audit").status_code == 401  # admin only
    verdict = httpx.get(f"{qs.url}/admin/audit/verify", headers=ADMIN).json()
    assert verdict["ok"] is True and verdict["records"] >= 3


def test_tampering_is_found_by_verify(gateway: ServerProcess, tmp_path: Path) -> None:
    db = tmp_path / "qs.sqlite3"
    srv = start_qs(gateway.url, db)
    try:
        httpx.post(f"{srv.url}/v1/documents", json=DOCS[0], timeout=20)
        first = chat(srv, query=LEAVE).json()
        chat(srv, query=VPN)
        assert httpx.get(f"{srv.url}/admin/audit/verify", headers=ADMIN).json()["ok"] is True
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE audit SET body = REPLACE(body, '25 days', '40 days') WHERE request_id = ?",
                (first["request_id"],),
            )
        report = httpx.get(f"{srv.url}/admin/audit/verify", headers=ADMIN).json()
        assert report["ok"] is False and "changed" in report["problem"]
        assert report["first_bad_id"] == audit_of(srv, first["request_id"])["id"]
    finally:
        srv.stop()


def test_retention_removes_expired_days_at_startup(gateway: ServerProcess, tmp_path: Path) -> None:
    db = tmp_path / "qs.sqlite3"
    store = SQLiteStore(str(db))
    for i, day in enumerate(["2020-01-01", "2020-01-02", "2099-01-01"]):
        store.audit.append(
            {
                "at": f"{day}T12:00:00.000Z",
                "kind": "answer",
                "outcome": "ok",
                "reason_code": None,
                "request_id": f"old{i}",
            }
        )
    store.close()
    srv = start_qs(gateway.url, db, QS_AUDIT_RETENTION_DAYS="30")
    try:
        records = httpx.get(f"{srv.url}/admin/audit", headers=ADMIN).json()["records"]
        assert [r["request_id"] for r in records] == ["old2"]
        report = httpx.get(f"{srv.url}/admin/audit/verify", headers=ADMIN).json()
        assert report["ok"] is True and report["records"] == 2  # old2 and the retention record
        assert report["anchor"] != "0" * 64
    finally:
        srv.stop()


@pytest.mark.parametrize("closed", [False, True])
def test_a_failing_audit_write_keeps_the_answer_unless_fail_closed(
    gateway: ServerProcess, tmp_path: Path, closed: bool
) -> None:
    db = tmp_path / "qs.sqlite3"
    srv = start_qs(gateway.url, db, QS_AUDIT_FAIL_CLOSED=str(closed).lower())
    try:
        httpx.post(f"{srv.url}/v1/documents", json=DOCS[0], timeout=20)
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        resp = chat(srv, query=LEAVE)
        stream = sse(chat(srv, query=LEAVE, stream=True).text)
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert "cairn_qs_audit_failures_total 2.0" in metrics
        if closed:
            assert resp.status_code == 500 and resp.json()["reason_code"] == "INTERNAL_ERROR"
            assert "audit" in resp.json()["message"]
            assert stream[-2][0] == "fallback" and stream[-2][1]["discard_answer"] is True
            assert "audit log" in stream[-2][1]["message"]
        else:
            assert resp.status_code == 200 and "25 days" in resp.json()["answer"]
            assert stream[-1][1]["status"] == "ok"
    finally:
        srv.stop()


def test_qs_refuses_to_start_on_a_broken_policy(gateway: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nrules:\n  - name: a\n    kind: pii\n    action: redact\n")
    with pytest.raises(RuntimeError, match="did not start") as info:
        start_qs(gateway.url, tmp_path / "qs.sqlite3", QS_POLICY_FILE=str(path))
    assert "line 5" in str(info.value) and "action" in str(info.value)


def test_qs_refuses_to_start_on_a_policy_key_that_is_not_text(gateway: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\n1: x\n")
    with pytest.raises(RuntimeError, match="did not start") as info:
        start_qs(gateway.url, tmp_path / "qs.sqlite3", QS_POLICY_FILE=str(path))
    assert "line 2" in str(info.value) and "a key must be text" in str(info.value)


def test_a_fail_closed_audit_keeps_no_withheld_answer_in_the_conversation_and_no_store_words_in_the_error(
    gateway: ServerProcess, tmp_path: Path
) -> None:
    db = tmp_path / "qs.sqlite3"
    srv = start_qs(gateway.url, db, QS_AUDIT_FAIL_CLOSED="true")
    try:
        httpx.post(f"{srv.url}/v1/documents", json=DOCS[0], timeout=20)
        conv = httpx.post(f"{srv.url}/v1/conversations", json={}, timeout=10).json()
        path = f"{srv.url}/v1/conversations/{conv['id']}"
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        resp = httpx.post(f"{path}/messages", json={"content": LEAVE}, timeout=30)
        assert resp.status_code == 500 and set(resp.json()) == {"reason_code", "message", "request_id"}
        assert resp.json()["reason_code"] == "INTERNAL_ERROR" and "audit log" in resp.json()["message"]
        stream = httpx.post(f"{path}/messages", json={"content": LEAVE, "stream": True}, timeout=30)
        fallback = dict(sse(stream.text)[-2][1])
        assert fallback["discard_answer"] is True and fallback["reason_code"] == "INTERNAL_ERROR"
        for text in (resp.text, stream.text):
            assert (
                "disk says no" not in text and "IntegrityError" not in text
            )  # the store's words stay in the log
        assert "disk says no" in srv.log_text()
        # Only what was delivered is kept: the two questions, neither withheld answer.
        messages = httpx.get(path, timeout=10).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "user"]
    finally:
        srv.stop()

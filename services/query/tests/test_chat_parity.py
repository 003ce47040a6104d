"""A JSON answer and a streamed answer are the same answer: for every way a chat can end, both paths give the
same text, citations, sources, reason code, rule and warnings (real gateway and QS processes).

Both are renderings of one pipeline (chat/pipeline.py); these cases are the ends it can reach: an answer (also
redacted and warned, from the cache, from a fallback provider), and every fallback: NO_CONTEXT, WEAK_EVIDENCE,
the gateway's failures (timeout, errors, malformed output, unreachable), a citation outside what was retrieved,
an answer its citations do not support, and the policy's question and answer rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess

from .conftest import DOCS, sse, start_gateway, start_qs

MAIL_DOC = {
    "id": "mail",
    "title": "Leave questions",
    "text": "Questions about leave go to hr@example.com within two days.",
}
POLICY = """version: 1
rules:
  - name: no-payroll
    kind: blocked_terms
    action: reject
    terms: [payroll]
    applies_to: [question]
  - name: no-closing-time
    kind: blocked_terms
    action: reject
    terms: [6pm]
    applies_to: [answer]
  - name: pii
    kind: pii
    action: warn
    types: [email]
    redact: true
    applies_to: [answer]
"""
LEAVE = "How many days of paid leave do employees get?"


def both(srv: ServerProcess, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same chat asked as JSON and as a stream, each reduced to what the user is shown."""
    url = f"{srv.url}/v1/chat"
    answer = httpx.post(url, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    stream = httpx.post(url, json={**body, "stream": True}, timeout=60)
    assert stream.status_code == 200, stream.text
    return shown_by_json(answer.json()), shown_by_stream(sse(stream.text))


def shown_by_json(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "reason_code", "answer", "citations", "sources", "policy_rule", "passages", "warnings")
    return {k: body[k] for k in keys}


def shown_by_stream(events: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [n for n, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and names.count("done") == 1, names
    done = events[-1][1]
    fallback = next((d for n, d in events if n == "fallback"), None)
    drawn = "".join(d["text"] for n, d in events if n == "delta")
    redacted = next((d["text"] for n, d in events if n == "redacted"), None)
    return {
        "status": done["status"],
        "reason_code": done.get("reason_code"),
        # A fallback's message replaces what was drawn; a redaction replaces the drawn text.
        "answer": fallback["message"] if fallback else redacted if redacted is not None else drawn,
        "citations": [] if fallback else next((d["citations"] for n, d in events if n == "citations"), []),
        "sources": events[0][1]["sources"],
        "policy_rule": fallback["policy_rule"] if fallback else None,
        "passages": fallback["passages"] if fallback else False,
        "warnings": [d for n, d in events if n == "warning"],
    }


def ingest(srv: ServerProcess, *docs: dict[str, Any]) -> None:
    for doc in docs:
        assert httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=30).status_code in (200, 201)


@pytest.fixture(scope="module")
def policy_qs(
    toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("parity")
    (folder / "policy.yaml").write_text(POLICY)
    srv = start_qs(toy_gateway.url, folder / "qs.sqlite3", QS_POLICY_FILE=str(folder / "policy.yaml"))
    ingest(srv, *DOCS, MAIL_DOC)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fake_qs(fake: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gateway = start_gateway(fake)
    env = {
        "QS_FIRST_TOKEN_TIMEOUT_MS": "1000",
        "QS_GATEWAY_TIMEOUT_MS": "1500",
        "QS_CIRCUIT_FAILURES": "1000",
    }
    srv = start_qs(gateway.url, tmp_path_factory.mktemp("parity") / "qs.sqlite3", **env)
    ingest(srv, *DOCS)
    yield srv
    srv.stop()
    gateway.stop()


# (question, what both must say): every end but the policy's and the gateway's.
TOY_CASES = {
    "answer": (LEAVE, {"status": "ok", "reason_code": None}),
    "no_context": ("Explain quantum chromodynamics", {"status": "fallback", "reason_code": "NO_CONTEXT"}),
    "question_rule": (
        "What is the payroll rule for paid leave?",
        {"status": "fallback", "reason_code": "POLICY_REJECTED", "policy_rule": "no-payroll"},
    ),
    "answer_rule": (
        "When does the office close on weekdays?",
        {"status": "fallback", "reason_code": "POLICY_REJECTED", "policy_rule": "no-closing-time"},
    ),
    "redacted_and_warned": ("Where do questions about leave go?", {"status": "ok", "reason_code": None}),
}


@pytest.mark.parametrize("case", list(TOY_CASES))
def test_json_and_stream_give_the_same_answer(policy_qs: ServerProcess, case: str) -> None:
    question, expected = TOY_CASES[case]
    as_json, as_stream = both(policy_qs, query=question, cache=False)
    assert as_json == as_stream
    assert as_json == {**as_json, **expected}
    if case == "redacted_and_warned":
        assert "[EMAIL]" in as_json["answer"] and [w["rule"] for w in as_json["warnings"]] == ["pii"]


def test_a_cached_answer_is_the_same_in_json_and_in_a_stream(policy_qs: ServerProcess) -> None:
    fresh = httpx.post(f"{policy_qs.url}/v1/chat", json={"query": LEAVE + " Per year?"}, timeout=60).json()
    as_json, as_stream = both(policy_qs, query=LEAVE + " Per year?")
    assert as_json == as_stream == shown_by_json(fresh) and fresh["status"] == "ok"


def test_middling_evidence_gives_the_same_closest_passages(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    srv = start_qs(toy_gateway.url, tmp_path / "qs.sqlite3", QS_ANSWER_EVIDENCE="2")
    try:
        ingest(srv, *DOCS)
        # "calendar" is in no document: a quote holding every word of the question would be strong from
        # QS_MIN_EVIDENCE up (evidence.py), whatever QS_ANSWER_EVIDENCE says.
        as_json, as_stream = both(srv, query=LEAVE + " Each calendar year?")
        assert as_json == as_stream
        assert (
            as_json["reason_code"] == "WEAK_EVIDENCE" and as_json["passages"] is True and as_json["sources"]
        )
    finally:
        srv.stop()


# The fake model's failures, chosen per question (cairn_testing.fake_openai), and the code each one ends in.
# (Not `[[malformed]]`: the fake breaks a JSON answer but only adds one bad frame to a stream, which the gateway
# skips, so the two paths are not asked the same thing.)
FAKE_CASES = {
    "timeout": ("[[slow_first:5]]", "PROVIDER_TIMEOUT"),
    "provider_error": ("[[fail_always]]", "PROVIDER_ERROR"),
    "busy": ("[[busy]]", "PROVIDER_UNAVAILABLE"),  # 429 from the model: the gateway says unavailable
    "invalid_citation": ("[[bad_citation]]", "INVALID_CITATION"),
    "unsupported_answer": ("[[made_up_number]]", "UNSUPPORTED_ANSWER"),
    "model_answer": ("[[good_citation]]", None),
}


@pytest.mark.parametrize("case", list(FAKE_CASES))
def test_the_gateways_failures_end_the_same_in_json_and_in_a_stream(
    fake_qs: ServerProcess, case: str
) -> None:
    mark, code = FAKE_CASES[case]
    as_json, as_stream = both(fake_qs, query=f"How many days of paid leave? {mark}", cache=False)
    assert as_json == as_stream
    assert as_json["reason_code"] == code and as_json["status"] == ("fallback" if code else "ok")
    assert as_json["sources"][0]["chunk_id"] == "leave:0"


def test_an_unreachable_gateway_ends_the_same_in_json_and_in_a_stream(tmp_path: Path) -> None:
    # Port 9 (discard) refuses the connection: the gateway is down from the start.
    srv = start_qs("http://127.0.0.1:9", tmp_path / "qs.sqlite3", QS_CIRCUIT_FAILURES="1000")
    try:
        ingest(srv, *DOCS)
        as_json, as_stream = both(srv, query=LEAVE)
        assert as_json == as_stream and as_json["reason_code"] == "PROVIDER_UNAVAILABLE"
    finally:
        srv.stop()


def test_a_fallback_providers_answer_is_the_same_in_json_and_in_a_stream(
    fake: ServerProcess, tmp_path: Path
) -> None:
    gateway = start_gateway(fake, LLM_RETRIES="0", LLM_FALLBACK_PROVIDERS="toy")
    srv = start_qs(gateway.url, tmp_path / "qs.sqlite3")
    try:
        ingest(srv, *DOCS)
        as_json, as_stream = both(srv, query=f"{LEAVE} [[fail_always]]", cache=False)
        assert as_json == as_stream
        assert (
            as_json["status"] == "ok" and as_json["reason_code"] == "PROVIDER_ERROR" and as_json["citations"]
        )
    finally:
        srv.stop()
        gateway.stop()

"""Grounded chat against real QS and gateway processes: citations, streams, cache, degradation."""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from cairn_testing import ServerProcess, wait_for

from .conftest import ADMIN, DOCS, generations, sse, start_gateway, start_qs


def chat(srv: ServerProcess, **body: object) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/chat", json=body, timeout=30)


def test_chat_answers_with_valid_citations_and_sources(qs: ServerProcess) -> None:
    resp = chat(qs, query="How many days of paid leave do employees get?")
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "ok" and body["reason_code"] is None
    assert body["citations"] == [
        {"chunk_id": "leave:0", "title": "Leave policy", "url": "https://wiki.example/leave", "page": None}
    ]
    assert "25 days" in body["answer"]
    assert body["sources"][0]["chunk_id"] == "leave:0"
    # Sources are the relevant chunks only: nothing about VPNs for a leave question.
    assert "vpn:0" not in {s["chunk_id"] for s in body["sources"]}
    assert body["request_id"] == resp.headers["x-request-id"]


def test_multi_turn_uses_the_last_user_message_for_retrieval(qs: ServerProcess) -> None:
    body = chat(
        qs,
        messages=[
            {"role": "user", "content": "How many days of paid leave do employees get?"},
            {"role": "assistant", "content": "25 days."},
            {"role": "user", "content": "When does the office close on weekdays?"},
        ],
    ).json()
    assert body["status"] == "ok" and body["citations"][0]["chunk_id"] == "office:0"


def test_stream_sources_first_then_relayed_events_then_done(qs: ServerProcess) -> None:
    resp = chat(qs, query="When does the office close on weekdays?", stream=True)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse(resp.text)
    names = [n for n, _ in events]
    assert names[0] == "sources" and names[1] == "meta"
    assert names[-2:] == ["citations", "done"] and set(names[2:-2]) == {"delta"}
    assert events[0][1]["sources"][0]["chunk_id"] == "office:0"
    answer = "".join(d["text"] for n, d in events if n == "delta")
    assert "6pm" in answer
    assert events[-2][1]["citations"][0]["chunk_id"] == "office:0"
    assert events[-1][1]["status"] == "ok"


def _closed_connections_to(port: int) -> int:
    """Connections to `port` this machine closed itself (they wait in TIME_WAIT for a minute on Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "06" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def test_finished_streams_keep_the_gateway_connection(qs: ServerProcess, toy_gateway: ServerProcess) -> None:
    # QS stops reading at `done`; the gateway ends its chunked body in the same write, so the pooled connection
    # stays open. If the end ever came apart from `done`, closing there would cost a new connection per chat.
    before = _closed_connections_to(toy_gateway.port)
    for i in range(4):
        resp = chat(qs, query=f"When does the office close on weekdays, question {i}?", stream=True)
        assert sse(resp.text)[-1][1]["status"] == "ok"
        time.sleep(0.1)
    assert _closed_connections_to(toy_gateway.port) - before == 0


def test_cache_hit_then_invalidated_by_new_documents(qs: ServerProcess) -> None:
    q = "When is the building closed?"
    first = chat(qs, query=q).json()
    second = chat(qs, query="  when is the BUILDING closed? ").json()
    assert first["cache"] == "miss" and second["cache"] == "hit"
    assert second["answer"] == first["answer"] and second["citations"] == first["citations"]
    streamed = chat(qs, query=q, stream=True)
    assert streamed.headers["x-cache"] == "hit" and sse(streamed.text)[-1][1]["status"] == "ok"
    httpx.post(f"{qs.url}/v1/documents", json={"id": "tmp-cache", "text": "A new memo about something."})
    assert chat(qs, query=q).json()["cache"] == "miss"
    metrics = httpx.get(f"{qs.url}/metrics").text
    assert 'cairn_qs_cache_total{result="hit"}' in metrics


def test_no_context_does_not_call_the_model(qs: ServerProcess) -> None:
    body = chat(qs, query="Explain quantum chromodynamics").json()
    assert body["status"] == "fallback" and body["reason_code"] == "NO_CONTEXT"
    assert body["sources"] == [] and body["citations"] == [] and body["answer"]
    events = sse(chat(qs, query="Explain quantum chromodynamics", stream=True).text)
    assert [n for n, _ in events] == ["sources", "fallback", "done"]
    assert events[0][1] == {"sources": []} and events[-1][1]["reason_code"] == "NO_CONTEXT"


def test_bad_chat_requests_are_400(qs: ServerProcess) -> None:
    for body in (
        {},
        {"query": ""},
        {"query": "x", "messages": [{"role": "user", "content": "y"}]},
        {"query": "x", "top_k": 0},
        {"messages": [{"role": "assistant", "content": "y"}]},
        {"query": "x", "filters": {'a") OR 1=1 --': "x"}},
    ):
        resp = chat(qs, **body)
        assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST"


def test_hybrid_query_scores_a_grounded_answer(qs: ServerProcess, toy_gateway: ServerProcess) -> None:
    question = "When does the office close?"
    body = httpx.post(f"{qs.url}/v1/hybrid-query", json={"query": question}).json()
    assert body["status"] == "ok" and "6pm" in body["text"]
    assert [c["chunk_id"] for c in body["citations"]] == ["office:0"]
    # The same cosines worked out here from the gateway's own embeddings of the question, the answer and the
    # cited chunk as QS stores it (its title, a newline, its text): a score built from other vectors, or
    # weighted otherwise, fails.
    office = next(d for d in DOCS if d["id"] == "office")
    texts = [question, body["text"], f"{office['title']}\n{office['text']}"]
    vectors = httpx.post(f"{toy_gateway.url}/v1/embed", json={"input": texts}).json()["embeddings"]
    q, answer, chunk = (np.asarray(v) / np.linalg.norm(v) for v in vectors)
    relevance, grounding = max(0.0, float(q @ chunk)), max(0.0, float(answer @ chunk))
    assert body["relevance"] == pytest.approx(relevance, abs=1e-3)
    assert body["grounding"] == pytest.approx(grounding, abs=1e-3)
    assert body["score"] == pytest.approx((relevance + grounding) / 2, abs=1e-3)
    assert body["relevance"] > 0 and body["grounding"] > 0
    # A question the documents cannot answer has nothing to score.
    refused = httpx.post(f"{qs.url}/v1/hybrid-query", json={"query": "Explain quantum chromodynamics"}).json()
    assert refused["reason_code"] == "NO_CONTEXT" and refused["score"] == 0


# --- degradation ------------------------------------------------------------------------------------------


@contextmanager
def qs_via_fake(
    fake: ServerProcess, db: Path, gateway_env: dict[str, str] | None = None, **env: str
) -> Iterator[ServerProcess]:
    gw = start_gateway(fake, **(gateway_env or {}))
    srv = start_qs(gw.url, db, **env)
    try:
        for doc in DOCS:
            httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20)
        yield srv
    finally:
        srv.stop()
        gw.stop()


@pytest.fixture()
def qs_on_fake(fake: ServerProcess, tmp_path: Path) -> Iterator[ServerProcess]:
    with qs_via_fake(
        fake, tmp_path / "fake.sqlite3", QS_FIRST_TOKEN_TIMEOUT_MS="1000", QS_GATEWAY_TIMEOUT_MS="1500"
    ) as srv:
        yield srv


def test_invalid_citations_never_leak(qs_on_fake: ServerProcess) -> None:
    q = "How many days of paid leave? [[bad_citation]]"
    body = chat(qs_on_fake, query=q).json()
    assert body["status"] == "fallback" and body["reason_code"] == "INVALID_CITATION"
    assert body["citations"] == [] and "not-a-real-chunk" not in str(body)
    assert body["sources"][0]["chunk_id"] == "leave:0"
    events = sse(chat(qs_on_fake, query=q, stream=True).text)
    names = [n for n, _ in events]
    assert "citations" not in names and "error" not in names and names[-2:] == ["fallback", "done"]
    assert events[-1][1] == {**events[-1][1], "status": "fallback", "reason_code": "INVALID_CITATION"}
    assert "not-a-real-chunk" not in str(events)
    # The answer text had already streamed: the client is told to drop it.
    assert "delta" in names and events[-2][1]["discard_answer"] is True


def test_valid_citations_through_a_real_openai_server(qs_on_fake: ServerProcess, fake: ServerProcess) -> None:
    resp = chat(qs_on_fake, query="How many days of paid leave?", stream=True)
    events = sse(resp.text)
    assert events[-1][1]["status"] == "ok" and events[-2][0] == "citations"
    # The request id travelled QS → gateway → provider.
    stats = httpx.get(f"{fake.url}/_stats").json()
    assert stats["last_headers"].get("x-request-id") == resp.headers["x-request-id"]


def test_gateway_slow_times_out_into_search_results(qs_on_fake: ServerProcess) -> None:
    q = "How many days of paid leave? [[slow_first:5]]"
    body = chat(qs_on_fake, query=q).json()
    assert body["status"] == "fallback" and body["reason_code"] == "PROVIDER_TIMEOUT"
    assert body["sources"][0]["chunk_id"] == "leave:0"
    events = sse(chat(qs_on_fake, query=q, stream=True).text)
    assert [n for n, _ in events] == ["sources", "fallback", "done"]
    assert events[-1][1]["reason_code"] == "PROVIDER_TIMEOUT"


def test_gateway_down_falls_back_to_bm25_search(tmp_path: Path) -> None:
    gw = start_gateway()
    srv = start_qs(gw.url, tmp_path / "down.sqlite3", QS_CIRCUIT_FAILURES="2")
    try:
        for doc in DOCS:
            httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20)
        gw.stop()
        assert httpx.get(f"{srv.url}/readyz").status_code == 200
        search = httpx.post(f"{srv.url}/v1/search", json={"query": "paid leave days"}).json()
        assert search["mode"] == "bm25" and search["results"][0]["chunk_id"] == "leave:0"
        body = chat(srv, query="How many days of paid leave?").json()
        assert body["status"] == "fallback" and body["sources"][0]["chunk_id"] == "leave:0"
        assert body["reason_code"] in ("PROVIDER_UNAVAILABLE", "CIRCUIT_OPEN")
        assert "unavailable" in body["answer"]
        events = sse(chat(srv, query="How many days of paid leave?", stream=True).text)
        assert [n for n, _ in events] == ["sources", "fallback", "done"]
        assert events[-1][1]["status"] == "fallback"
        assert chat(srv, query="How many days of paid leave?").json()["reason_code"] == "CIRCUIT_OPEN"
        assert httpx.get(f"{srv.url}/readyz").json()["gateway_circuit"] == "open"
        # Ingest still works without embeddings, and the document is searchable by BM25.
        resp = httpx.post(f"{srv.url}/v1/documents", json={"id": "late", "text": "Gondolas need tickets."})
        assert resp.status_code == 201
        assert httpx.post(f"{srv.url}/v1/search", json={"query": "gondolas"}).json()["results"][0][
            "chunk_id"
        ] == ("late:0")
        assert 'cairn_qs_fallbacks_total{reason_code="CIRCUIT_OPEN"}' in httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
        gw.stop()


def test_client_disconnect_cancels_the_generation_upstream(fake: ServerProcess, tmp_path: Path) -> None:
    rid = "qs-disconnect-test"
    body = {"query": "How many days of paid leave? [[endless]]", "stream": True}
    # Long timeouts, so that only the disconnect (not a deadline or QS stopping) can end the endless answer.
    with qs_via_fake(fake, tmp_path / "dc.sqlite3", QS_GATEWAY_TIMEOUT_MS="60000") as srv:
        headers = {"X-Request-ID": rid}
        with httpx.stream("POST", f"{srv.url}/v1/chat", json=body, headers=headers, timeout=10) as resp:
            for line in resp.iter_lines():
                if line == "event: delta":
                    break  # leave mid-answer
        # The fake records the disconnect once the gateway closed its request.
        wait_for(lambda: rid in httpx.get(f"{fake.url}/_stats").json()["disconnected"], "the disconnect", 5)


def test_reembed_rewrites_every_vector(qs: ServerProcess) -> None:
    ready = httpx.get(f"{qs.url}/readyz").json()
    refused = httpx.post(f"{qs.url}/admin/reembed", timeout=30)
    assert refused.status_code == 401 and refused.json()["reason_code"] == "UNAUTHORIZED"
    wrong = httpx.post(f"{qs.url}/admin/reembed", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    body = httpx.post(f"{qs.url}/admin/reembed", headers=ADMIN, timeout=30).json()
    assert body == {"chunks": ready["chunks"], "model": "toy-hash-256", "dims": 256}
    assert httpx.post(f"{qs.url}/v1/search", json={"query": "paid leave"}).json()["mode"] == "hybrid"


def test_queue_full_at_the_gateway_degrades_to_search_results(fake: ServerProcess, tmp_path: Path) -> None:
    gateway_env = {"LLM_MAX_CONCURRENCY": "1", "LLM_QUEUE_SIZE": "0"}
    with (
        qs_via_fake(fake, tmp_path / "q.sqlite3", gateway_env, QS_GATEWAY_TIMEOUT_MS="20000") as srv,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        seen = httpx.get(f"{fake.url}/_stats").json()["requests"]
        slow = pool.submit(chat, srv, query="How many days of paid leave? [[slow_first:3]]")
        wait_for(
            lambda: httpx.get(f"{fake.url}/_stats").json()["requests"] > seen,
            "the slow request to hold the gateway's only slot",
            4,
            0.02,
        )
        body = chat(srv, query="When does the office close on weekdays?").json()
        assert body["status"] == "fallback" and body["reason_code"] == "QUEUE_FULL"
        assert body["sources"][0]["chunk_id"] == "office:0" and "busy" in body["answer"]
        assert slow.result().json()["status"] == "ok"


def test_a_made_up_number_under_a_valid_citation_becomes_unsupported_answer(
    qs_on_fake: ServerProcess,
) -> None:
    q = "How many days of paid leave? [[made_up_number]]"
    body = chat(qs_on_fake, query=q).json()
    # The fake cites a real chunk but says "4711 days": the citation is valid, the answer is not.
    assert body["status"] == "fallback" and body["reason_code"] == "UNSUPPORTED_ANSWER", body
    assert "4711" in body["message"] and body["citations"] == []
    assert body["sources"][0]["chunk_id"] == "leave:0"
    events = sse(chat(qs_on_fake, query=q, stream=True).text)
    names = [n for n, _ in events]
    # The text was already streamed: the fallback event tells the page to discard it, and says why.
    fallback = next(d for n, d in events if n == "fallback")
    assert fallback["reason_code"] == "UNSUPPORTED_ANSWER" and fallback["discard_answer"] is True
    assert "4711" in fallback["message"] and names[-1] == "done"
    assert events[-1][1]["status"] == "fallback" and events[-1][1]["reason_code"] == "UNSUPPORTED_ANSWER"


def test_a_quoted_answer_from_the_sources_is_ok(qs_on_fake: ServerProcess) -> None:
    body = chat(qs_on_fake, query="How many days of paid leave? [[good_citation]]").json()
    assert body["status"] == "ok", body
    assert body["answer"] == "Employees get 25 days of paid leave per year."


def test_an_empty_admin_token_turns_admin_endpoints_off(toy_gateway: ServerProcess, tmp_path: Path) -> None:
    """QS_ADMIN_TOKEN= (set, but empty) once matched an empty Authorization header and let anyone re-embed."""
    srv = start_qs(toy_gateway.url, tmp_path / "q.sqlite3", QS_ADMIN_TOKEN="")
    try:
        for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer"}):
            resp = httpx.post(f"{srv.url}/admin/reembed", headers=headers, timeout=30)
            assert resp.status_code == 401 and resp.json()["reason_code"] == "UNAUTHORIZED", resp.text
            assert "QS_ADMIN_TOKEN is not set" in resp.json()["message"]
    finally:
        srv.stop()


def test_middling_evidence_shows_the_closest_passages_instead_of_an_answer(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    # Every question's evidence falls between the two thresholds here: answerable, never strong, as long as
    # the quote lacks a word of the question ("calendar"; a quote holding them all is strong, evidence.py).
    qs = start_qs(toy_gateway.url, tmp_path / "qs.sqlite3", QS_ANSWER_EVIDENCE="2")
    question = "How many days of paid leave do employees get per calendar year?"
    try:
        for doc in DOCS:
            assert httpx.post(f"{qs.url}/v1/documents", json=doc).status_code in (200, 201)
        before = generations(toy_gateway)
        body = chat(qs, query=question).json()
        assert body["status"] == "fallback" and body["reason_code"] == "WEAK_EVIDENCE", body
        assert body["passages"] is True and body["citations"] == [] and "not an answer" in body["answer"]
        first = body["sources"][0]
        assert first["chunk_id"].startswith("leave")
        # The passage shown is the best evidence sentence first (evidence.py), not a cut of the chunk.
        assert first["snippet"].startswith("Employees get 25 days of paid leave per year.")
        events = sse(chat(qs, query=question, stream=True).text)
        assert [n for n, _ in events] == ["sources", "fallback", "done"]
        assert events[0][1]["sources"] == body["sources"]
        assert events[1][1]["passages"] is True and events[1][1]["reason_code"] == "WEAK_EVIDENCE"
        assert (
            generations(toy_gateway) == before
        )  # the model is not asked for an answer that would not be shown
        # A quote holding every word of the question is answered, from QS_MIN_EVIDENCE up.
        covered = chat(qs, query="How many days of paid leave do employees get?").json()
        assert covered["status"] == "ok" and covered["answer"].startswith("Employees get 25 days"), covered
        # Nothing relevant at all is still a refusal, with no passages.
        none = chat(qs, query="Explain quantum chromodynamics").json()
        assert none["reason_code"] == "NO_CONTEXT" and none["passages"] is False and none["sources"] == []
    finally:
        qs.stop()


def test_a_verbatim_quote_of_a_grammar_line_is_answered(qs: ServerProcess) -> None:
    # Issue 22: a quoted grammar line was rejected with "e does not appear in the cited sources" ("E" read as a
    # name). A real Language Reference section (pydoc_data.topics, PSF licence), as Sphinx writes it.
    from pydoc_data.topics import topics

    doc = {"id": "floating", "title": "Lexical analysis", "collection": "pydocs", "text": topics["floating"]}
    assert httpx.post(f"{qs.url}/v1/documents", json=doc, timeout=30).status_code == 201
    body = chat(qs, query="How is exponentfloat defined?", collection="pydocs").json()
    assert body["status"] == "ok", body
    # The grammar, whole and on its own: no heading, underline or next sentence glued to it.
    assert body["answer"].startswith("floatnumber ::= pointfloat | exponentfloat")
    assert body["answer"].endswith('exponent ::= ("e" | "E") ["+" | "-"] digitpart [floating:0]')

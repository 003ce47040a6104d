"""The query service over the real Gemma 3 270M (llamacpp provider, packaged model) and the ONNX MiniLM embedder.

A small base model answers weakly, but the guarantees must hold all the same: constrained decoding makes the
citation JSON parse, every citation names a retrieved chunk, and a stream still ends in `done`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import ServerProcess, start_gateway

from .conftest import DOCS, sse, start_qs

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def qs_gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gw = start_gateway(name="gateway-llamacpp", provider="llamacpp", timeout_s=180, LLM_EMBED_PROVIDER="onnx")
    srv = start_qs(
        gw.url, Path(tmp_path_factory.mktemp("gemma")) / "qs.sqlite3", toy_embedder=False, QS_MAX_TOKENS="96"
    )
    try:
        for doc in DOCS:
            assert httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=60).status_code == 201
        yield srv
    finally:
        srv.stop()
        gw.stop()


def test_gemma_answer_parses_and_cites_only_retrieved_chunks(qs_gemma: ServerProcess) -> None:
    body = httpx.post(
        f"{qs_gemma.url}/v1/chat", json={"query": "How many days of paid leave do employees get?"}, timeout=90
    ).json()
    assert body["status"] == "ok", body
    assert body["provider"] == "llamacpp" and body["answer"].strip()
    sources = {s["chunk_id"] for s in body["sources"]}
    assert body["citations"] and {c["chunk_id"] for c in body["citations"]} <= sources


def test_gemma_stream_relays_deltas_and_ends_with_done(qs_gemma: ServerProcess) -> None:
    resp = httpx.post(
        f"{qs_gemma.url}/v1/chat",
        json={"query": "When does the office close on weekdays?", "stream": True},
        timeout=90,
    )
    events = sse(resp.text)
    names = [n for n, _ in events]
    assert names[:2] == ["sources", "meta"] and names[-1] == "done"
    sources = {s["chunk_id"] for s in events[0][1]["sources"]}
    assert events[-1][1]["status"] == "ok", events[-3:]
    assert "delta" in names and names[-2] == "citations"
    assert {c["chunk_id"] for c in events[-2][1]["citations"]} <= sources


def test_gemma_no_context_question_never_reaches_the_model(qs_gemma: ServerProcess) -> None:
    body = httpx.post(
        f"{qs_gemma.url}/v1/chat", json={"query": "Explain quantum chromodynamics"}, timeout=60
    ).json()
    assert body["reason_code"] == "NO_CONTEXT" and body["sources"] == []


@pytest.mark.parametrize(
    "question",
    [
        "How many parking spaces does the office have?",
        "What is the Wi-Fi password in the office?",
        "How much does the VPN client cost?",
    ],
)
def test_gemma_stack_refuses_a_question_the_documents_do_not_answer(
    qs_gemma: ServerProcess, question: str
) -> None:
    # Each shares words with a document ("office", "VPN"), so retrieval finds something; none is an answer.
    body = httpx.post(f"{qs_gemma.url}/v1/chat", json={"query": question}, timeout=90).json()
    assert body["status"] == "fallback" and body["reason_code"] == "NO_CONTEXT", body
    assert body["citations"] == []


def test_gemma_stack_shows_the_closest_passages_when_the_documents_are_about_the_question(
    qs_gemma: ServerProcess,
) -> None:
    # No sentence answers "Tell me about WireGuard." (with the name taken out, its match is about 0), but the
    # VPN page is about WireGuard (cosine 0.54): "I could not find anything about this" would be untrue.
    body = httpx.post(
        f"{qs_gemma.url}/v1/chat", json={"query": "Tell me about WireGuard."}, timeout=90
    ).json()
    assert body["status"] == "fallback" and body["reason_code"] == "WEAK_EVIDENCE", body
    assert body["passages"] is True and body["citations"] == []
    assert body["sources"][0]["chunk_id"] == "vpn:0"


def test_gemma_stack_quotes_the_sentence_that_answers(qs_gemma: ServerProcess) -> None:
    body = httpx.post(
        f"{qs_gemma.url}/v1/chat", json={"query": "How long in advance must leave be requested?"}, timeout=90
    ).json()
    assert body["status"] == "ok", body
    assert "two weeks" in body["answer"] and [c["chunk_id"] for c in body["citations"]] == ["leave:0"]


def test_gemma_made_up_number_is_rejected_as_unsupported(tmp_path: Path) -> None:
    """The grammar-JSON mode lets Gemma write its own answer; asked for a figure the documents lack, it
    invents one under a valid citation, and QS turns that into UNSUPPORTED_ANSWER instead of an ok answer."""
    gw = start_gateway(
        name="gateway-llamacpp-json",
        provider="llamacpp",
        timeout_s=180,
        LLM_EMBED_PROVIDER="onnx",
        LLM_GROUNDED_MODE="json",
        LLM_TEMPERATURE="0",
        LLM_MAX_CONCURRENCY="1",
        # The grammar runs at a quarter of the free speed: generous timeouts for a busy CI box.
        LLM_TIMEOUT_MS="120000",
        LLM_FIRST_TOKEN_TIMEOUT_MS="60000",
    )
    # Evidence gating off, so that the question reaches the model at all.
    srv = start_qs(
        gw.url,
        tmp_path / "qs.sqlite3",
        toy_embedder=False,
        QS_MIN_EVIDENCE="-2",
        QS_ANSWER_EVIDENCE="-2",
        QS_MAX_TOKENS="64",
        QS_GATEWAY_TIMEOUT_MS="120000",
        QS_FIRST_TOKEN_TIMEOUT_MS="60000",
    )
    try:
        for doc in DOCS:
            assert httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=60).status_code == 201
        question = "What does a VPN licence cost per year in euros?"
        body = httpx.post(f"{srv.url}/v1/chat", json={"query": question}, timeout=120).json()
        assert body["status"] == "fallback" and body["reason_code"] == "UNSUPPORTED_ANSWER", body
        assert "does not appear in the cited sources" in body["message"] and body["citations"] == []
        assert body["sources"] and body["request_id"]
    finally:
        srv.stop()
        gw.stop()

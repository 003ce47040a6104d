"""The query service over the real Gemma 3 270M (llamacpp provider, packaged model) and the ONNX MiniLM embedder.

A small base model answers weakly, but the guarantees must hold all the same: constrained decoding makes the
citation JSON parse, every citation names a retrieved chunk, and a stream still ends in `done`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import ServerProcess, start_server

from .conftest import DOCS, sse, start_qs

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def qs_gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gw = start_server(
        "gateway-llamacpp",
        ["cairn_gateway"],
        env={"LLM_PORT": "{port}", "LLM_PROVIDER": "llamacpp", "LLM_EMBED_PROVIDER": "onnx", "LLM_MODEL": ""},
        health_path="/readyz",
        timeout_s=180,
    )
    srv = start_qs(gw.url, Path(tmp_path_factory.mktemp("gemma")) / "qs.sqlite3", QS_MAX_TOKENS="96")
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

"""`make local-llm-up` + `LLM_PROVIDER=openai_compat`, for real: llama-cpp-python's own OpenAI server with the
packaged Gemma 3 270M, and a gateway in front of it, answering a grounded question.

That server refuses `response_format: json_schema` (HTTP 500) and takes `json_object` with a `schema` key, which
it makes a grammar of; the gateway has to learn that, or every grounded answer is the sources fallback.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cairn_gateway.in_process import resolve_gguf
from cairn_testing import ServerProcess, start_gateway, start_server

from .conftest import models, sse

pytestmark = pytest.mark.model

CHUNKS = [
    {
        "chunk_id": "handbook:0",
        "title": "Trail handbook",
        "text": "Cairns are piles of stones that hikers stack to mark a trail above the tree line.",
    },
    {
        "chunk_id": "handbook:1",
        "title": "Trail handbook",
        "text": "Water sources on the ridge dry up by late summer, so carry two litres.",
    },
]
GROUNDED = {
    "prompt": "What marks a trail above the tree line?",
    "citations_required": True,
    "context_chunks": CHUNKS,
    "max_tokens": 160,
    "temperature": 0,
}
# What a fallback may honestly say when the 270M model's JSON is unusable; never the server's own failure.
HONEST_FALLBACKS = {"MALFORMED_OUTPUT", "INVALID_CITATION", "MISSING_CITATIONS"}


@pytest.fixture(scope="module")
def local_llm() -> Iterator[ServerProcess]:
    """`python -m llama_cpp.server` as scripts/local_llm.sh starts it: the packaged model, resolved the same way."""
    model = resolve_gguf(None)[0]
    srv = start_server(
        "local-llm",
        [
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "gemma-3-270m",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--n_ctx",
            "4096",
        ],
        health_path="/v1/models",
        timeout_s=120,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gw(local_llm: ServerProcess) -> Iterator[ServerProcess]:
    """The gateway as `LLM_PROVIDER=openai_compat make up` runs it against that server, fallback chain included."""
    srv = start_gateway(
        local_llm,
        name="gateway-local-llm",
        LLM_MODEL="gemma-3-270m",
        LLM_FALLBACK_PROVIDERS="sources",
        LLM_CIRCUIT_FAILURES="1",
        LLM_TIMEOUT_MS="90000",
        LLM_FIRST_TOKEN_TIMEOUT_MS="60000",
        LLM_IDLE_TIMEOUT_MS="30000",
    )
    yield srv
    srv.stop()


def _check_grounded(body: dict) -> None:
    """A model answer with citations of the given chunks, or a fallback that says the output was unusable."""
    if body["status"] == "ok":
        assert body["provider"] == "openai_compat" and body["answer"].strip()
        assert body["citations"] and {c["chunk_id"] for c in body["citations"]} <= {
            "handbook:0",
            "handbook:1",
        }
    else:
        assert body["status"] == "fallback" and body["reason_code"] in HONEST_FALLBACKS, body


def test_a_grounded_question_is_answered_by_the_local_llama_cpp_server(gw: ServerProcess) -> None:
    resp = httpx.post(f"{gw.url}/v1/generate", json=GROUNDED, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # Measured: "ok" on both llama.cpp builds tried here; greedy output differs between builds, and a 270M base
    # model's JSON may be unusable on another, which must then be said as such, never as a server failure.
    _check_grounded(body)
    model = next(m for m in models(gw).values() if m.get("default"))
    # The server refused json_schema once; json_object with the schema's grammar answered, and is what it is
    # asked from now on. The refusal opened no circuit (LLM_CIRCUIT_FAILURES=1).
    assert model["structured_output"] == "json_object" and model["circuit"] == "closed"
    assert gw.log_text().count("structured_output_mode") == 1


def test_a_streamed_grounded_answer_ends_with_its_citations(gw: ServerProcess) -> None:
    resp = httpx.post(f"{gw.url}/v1/generate", json={**GROUNDED, "stream": True}, timeout=120)
    assert resp.status_code == 200, resp.text
    events = sse(resp.text)
    done = events[-1][1]
    assert events[-1][0] == "done" and done["provider"] == "openai_compat", events
    if done["status"] == "ok":
        [cited] = [d for e, d in events if e == "citations"]
        assert cited["citations"] and {c["chunk_id"] for c in cited["citations"]} <= {
            "handbook:0",
            "handbook:1",
        }
        assert "".join(d["text"] for e, d in events if e == "delta").strip()
    else:
        assert done["status"] == "fallback" and done["reason_code"] in HONEST_FALLBACKS, events
    assert gw.log_text().count("structured_output_mode") == 1  # learnt by the first request, not again

"""Grounded answers through a real gateway from fake servers that take `response_format` as real ones do
(`fake_openai --imitate`): whatever the server refuses, the answer is the model's, with valid citations, and the
refusal neither opens the circuit nor costs more than one extra call, once per upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cairn_testing import ServerProcess, start_fake_openai

from .conftest import models, sse, start_gateway, stats

CHUNKS = [
    {"chunk_id": "handbook:0", "title": "Handbook", "text": "Cairns mark trails."},
    {"chunk_id": "handbook:1", "title": "Handbook", "text": "Stack stones carefully."},
]

# imitation: (the mode the gateway ends up in, the response_format types the server refused on the way)
SERVERS = {
    "llama-cpp-python": ("json_object", ["json_schema"]),
    "vllm-xgrammar": ("json_object", ["json_schema"]),
    "no-structured-output": ("prompt", ["json_schema", "json_object"]),
    "ollama": ("json_schema", []),
    "vllm": ("json_schema", []),
}


def ask(gw: ServerProcess, stream: bool = False) -> httpx.Response:
    body = {"prompt": "What marks trails?", "citations_required": True, "context_chunks": CHUNKS}
    return httpx.post(f"{gw.url}/v1/generate", timeout=10, json={**body, "stream": stream})


@pytest.fixture(params=list(SERVERS))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, ServerProcess, ServerProcess]]:
    """A fake imitating one server, and a gateway whose circuit opens at the first failure it counts."""
    fake = start_fake_openai(f"fake-{request.param}", "--imitate", request.param)
    gw = start_gateway(fake, LLM_CIRCUIT_FAILURES="1")
    yield request.param, fake, gw
    gw.stop()
    fake.stop()


def test_grounded_answers_come_from_the_model_whatever_format_the_server_takes(
    upstream: tuple[str, ServerProcess, ServerProcess],
) -> None:
    imitation, fake, gw = upstream
    mode, refused = SERVERS[imitation]
    first = ask(gw).json()
    assert first["status"] == "ok", first
    assert first["answer"] == "Cairns mark trails." and first["citations"][0]["chunk_id"] == "handbook:0"
    events = sse(ask(gw, stream=True).text)
    assert [e for e, _ in events][-2:] == ["citations", "done"]
    assert "".join(d["text"] for e, d in events if e == "delta") == "Cairns mark trails."
    assert ask(gw).json()["status"] == "ok"
    # Each refusal happened once: the mode was learnt for the requests after it.
    assert stats(fake)["refused"] == refused
    model = next(m for m in models(gw).values() if m.get("default"))
    assert model["structured_output"] == mode
    assert model["circuit"] == "closed"  # LLM_CIRCUIT_FAILURES=1: one counted failure would have opened it
    assert gw.log_text().count("structured_output_mode") == len(refused)


def test_each_server_behind_a_router_is_asked_in_the_form_it_takes() -> None:
    llama, vllm = (start_fake_openai(f"fake-{n}", "--imitate", n) for n in ("llama-cpp-python", "vllm"))
    upstreams = [{"base_url": f"{f.url}/v1", "model": "fake-model"} for f in (llama, vllm)]
    gw = start_gateway(
        None, LLM_PROVIDER="openai_compat", LLM_UPSTREAMS=json.dumps(upstreams), LLM_CIRCUIT_FAILURES="1"
    )
    try:
        for _ in range(4):  # least in flight, then in turn: both servers are asked
            assert ask(gw).json()["status"] == "ok"
        [router] = [m for m in models(gw).values() if m["provider"] == "router"]
        deps = {d["base_url"]: d for d in router["deployments"]}
        assert deps[f"{llama.url}/v1"]["structured_output"] == "json_object"
        assert deps[f"{vllm.url}/v1"]["structured_output"] == "json_schema"
        assert all(d["failures"] == 0 and d["circuit"] == "closed" for d in deps.values())
        assert stats(llama)["refused"] == ["json_schema"] and stats(vllm)["refused"] == []
    finally:
        gw.stop()
        llama.stop()
        vllm.stop()

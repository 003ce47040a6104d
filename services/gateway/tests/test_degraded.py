"""A model that fails to load does not stop the gateway: it starts degraded, answers from the fallback chain,
says why, and loads the model by itself once it can (real processes; the hot load with the real model)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from cairn_testing import ServerProcess, start_gateway, wait_for

from .conftest import sse

CHUNKS = [
    {
        "chunk_id": "tide:0",
        "title": "Tide log",
        "text": "The keeper logs the tide every four hours. The log book is kept in the lamp room. Visitors sign it.",
    },
    {"chunk_id": "tide:1", "title": "Tide log", "text": "Storm warnings are raised at noon."},
]


def grounded(url: str, stream: bool = False) -> httpx.Response:
    body = {"prompt": "How often is the tide logged?", "citations_required": True, "context_chunks": CHUNKS}
    return httpx.post(f"{url}/v1/generate", json={**body, "stream": stream}, timeout=60)


def start_broken_gateway(tmp_path: Path, **env: str) -> ServerProcess:
    """A gateway whose model file is missing, with the shipped fallback chain unless `env` changes it."""
    base = {
        "LLM_MODEL_PATH": str(tmp_path / "missing.gguf"),
        "LLM_BUILD_STATUS_PATH": str(tmp_path / "llama-build.json"),
        "LLM_FALLBACK_PROVIDERS": "sources",
    }
    return start_gateway(
        name="gateway-degraded", provider="llamacpp", health_path="/healthz", **{**base, **env}
    )


def test_a_model_that_fails_to_load_leaves_the_gateway_degraded_and_answering(tmp_path: Path) -> None:
    gw = start_broken_gateway(tmp_path)  # the shipped chain: LLM_FALLBACK_PROVIDERS=sources
    try:
        ready = httpx.get(f"{gw.url}/readyz")
        body = ready.json()
        assert ready.status_code == 200 and body["status"] == "degraded", body
        assert body["reason_code"] == "PROVIDER_UNAVAILABLE" and "missing.gguf" in body["message"]
        assert body["fallbacks"] == ["sources"] and body["request_id"]
        model = next(m for m in httpx.get(f"{gw.url}/v1/models").json()["data"] if m.get("default"))
        assert model["state"] == "not_loaded" and "missing.gguf" in model["error"]

        answer = grounded(gw.url).json()
        assert answer["status"] == "fallback" and answer["answered_by"] == "fallback_provider"
        assert answer["provider"] == "sources" and answer["reason_code"] == "PROVIDER_UNAVAILABLE"
        # Quoted word for word from the best-ranked source, and cited.
        assert (
            answer["answer"]
            == "The keeper logs the tide every four hours. The log book is kept in the lamp room."
        )
        assert [c["chunk_id"] for c in answer["citations"]] == ["tide:0"]

        events = sse(grounded(gw.url, stream=True).text)
        done = events[-1][1]
        assert done["answered_by"] == "fallback_provider" and done["provider"] == "sources"
        assert "".join(d["text"] for n, d in events if n == "delta").startswith("The keeper logs")

        # Plain chat has nothing to quote: the model's own failure comes back, not a made-up answer.
        plain = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "hi"}, timeout=30)
        assert plain.status_code == 503 and plain.json()["reason_code"] == "PROVIDER_UNAVAILABLE"
    finally:
        gw.stop()


def test_without_a_fallback_chain_the_gateway_still_starts_and_says_it_cannot_answer(tmp_path: Path) -> None:
    gw = start_broken_gateway(tmp_path, LLM_FALLBACK_PROVIDERS="")
    try:
        ready = httpx.get(f"{gw.url}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        resp = grounded(gw.url)
        assert resp.status_code == 503 and resp.json()["reason_code"] == "PROVIDER_UNAVAILABLE"
    finally:
        gw.stop()


def test_readyz_reports_the_background_build_of_llama_cpp(tmp_path: Path) -> None:
    status = {
        "state": "building",
        "started_at": time.time() - 125,
        "expected_s": 540,
        "log": ".run/llama-build.log",
    }
    (tmp_path / "llama-build.json").write_text(json.dumps(status))
    gw = start_broken_gateway(tmp_path)
    try:
        body = httpx.get(f"{gw.url}/readyz").json()
        assert body["status"] == "degraded" and "being compiled" in body["message"], body
        assert "2 min" in body["message"] and body["build"]["state"] == "building"
        assert body["build"]["elapsed_s"] >= 125
    finally:
        gw.stop()


@pytest.mark.model
def test_the_model_loads_by_itself_once_it_can_with_no_restart(tmp_path: Path) -> None:
    from cairn_gateway.in_process import packaged_gguf

    target = tmp_path / "missing.gguf"
    gw = start_broken_gateway(tmp_path, LLM_LOAD_RETRY_S="0.3", LLM_EMBED_PROVIDER="none")
    try:
        assert httpx.get(f"{gw.url}/readyz").json()["status"] == "degraded"
        # What the end of the first run's build amounts to: the model becomes loadable, and the build status
        # file changes (setup.sh writes it when the wheel is installed).
        os.symlink(packaged_gguf(None), target)
        (tmp_path / "llama-build.json").write_text(json.dumps({"state": "done", "started_at": time.time()}))
        wait_for(
            lambda: httpx.get(f"{gw.url}/readyz").json()["status"] == "ready", "the model to load", 60, 0.3
        )
        answer = grounded(gw.url).json()
        assert (
            answer["status"] == "ok" and answer["answered_by"] == "model" and answer["provider"] == "llamacpp"
        )
        assert "model_recovered" in gw.log_text()
    finally:
        gw.stop()

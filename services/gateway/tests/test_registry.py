"""Model registry with in-process models: declared aliases and admin load/unload/default, against a real
gateway process with the packaged Gemma 3 270M. The admin token, the sha256 manifest check and the memory
guard need no model and are tested in test_admin.py, in `make test-fast`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cairn_testing import ServerProcess, start_gateway

from .conftest import ADMIN_TOKEN, admin, models

pytestmark = pytest.mark.model

MODELS = [
    # The same packaged GGUF under a second alias, loaded only on request.
    {"alias": "gemma-b", "provider": "llamacpp", "load": False, "params": {"max_concurrency": 1}},
    {"alias": "toy", "provider": "toy"},
]


@pytest.fixture(scope="module")
def gw() -> Iterator[ServerProcess]:
    srv = start_gateway(
        name="gateway-registry",
        provider="llamacpp",
        timeout_s=120,
        LLM_MODEL="gemma",
        LLM_ADMIN_TOKEN=ADMIN_TOKEN,
        LLM_MODELS=json.dumps(MODELS),
    )
    yield srv
    srv.stop()


def ask(gw: ServerProcess, model: str) -> httpx.Response:
    body = {"prompt": "What is the capital of France?", "model": model, "max_tokens": 8, "temperature": 0}
    return httpx.post(f"{gw.url}/v1/generate", json=body, timeout=60)


def test_models_lists_declared_models_with_state_and_memory(gw: ServerProcess) -> None:
    m = models(gw)
    assert m["gemma"]["state"] == "loaded" and m["gemma"]["default"] is True
    assert m["gemma"]["memory_mb"] > 200 and m["gemma"]["provider"] == "llamacpp"
    assert m["gemma-b"]["state"] == "not_loaded" and m["gemma-b"]["memory_mb"] == 0
    assert m["toy"]["state"] == "loaded"
    # The shipped manifest of the packaged Gemma, checked by the load (docs/models.md, Model manifests).
    gemma = m["gemma"]["manifest"]
    assert gemma["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert gemma["origin"] == "shipped" and gemma["parameters"]["quantisation"] == "Q4_K_M"
    assert m["toy"]["manifest"]["name"] == "toy" and m["toy"]["manifest"]["file"] is None


def test_load_use_unload_and_switch_default_without_restart(gw: ServerProcess) -> None:
    assert ask(gw, "gemma-b").json()["reason_code"] == "PROVIDER_UNAVAILABLE"
    resp = admin(gw, "load", "gemma-b")
    assert resp.status_code == 200 and resp.json()["state"] == "loaded"
    assert resp.json()["slots"] == 1
    body = ask(gw, "gemma-b").json()
    assert body["status"] == "ok" and body["provider"] == "llamacpp"

    assert admin(gw, "default", "toy").json()["default"] is True
    plain = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "hi", "max_tokens": 8}, timeout=30).json()
    assert plain["provider"] == "toy"
    assert admin(gw, "default", "gemma").status_code == 200

    resp = admin(gw, "unload", "gemma-b")
    assert resp.status_code == 200 and resp.json()["state"] == "not_loaded"
    assert models(gw)["gemma-b"]["state"] == "not_loaded"
    assert ask(gw, "gemma-b").status_code == 503


def test_unknown_model_is_404(gw: ServerProcess) -> None:
    resp = ask(gw, "no-such-model")
    assert resp.status_code == 404 and resp.json()["reason_code"] == "MODEL_NOT_FOUND"


def test_default_model_over_the_memory_limit_starts_the_gateway_degraded_with_the_reason() -> None:
    # It used to stop start-up; a model that cannot load must not take the gateway (and its fallbacks) down.
    gw = start_gateway(
        name="gateway-memory-guard",
        provider="llamacpp",
        health_path="/healthz",
        LLM_MEMORY_LIMIT_MB="100",
        LLM_FALLBACK_PROVIDERS="sources",
    )
    try:
        ready = httpx.get(f"{gw.url}/readyz").json()
        assert ready["status"] == "degraded" and "LLM_MEMORY_LIMIT_MB=100" in ready["message"], ready
    finally:
        gw.stop()

"""Real processes on loopback: the fake OpenAI-compatible server and gateways configured against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess, start_server
from cairn_testing import parse_sse as sse  # noqa: F401 - re-exported for the tests


@pytest.fixture(scope="session")
def fake() -> Iterator[ServerProcess]:
    srv = start_server(
        "fake-openai", ["cairn_testing.fake_openai", "--port", "{port}"], health_path="/healthz"
    )
    yield srv
    srv.stop()


def start_gateway(fake: ServerProcess | None, **env: str) -> ServerProcess:
    base = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": "openai_compat" if fake else "toy",
        "LLM_BASE_URL": f"{fake.url}/v1" if fake else "",
        "LLM_MODEL": "fake-model",
        "LLM_EMBED_PROVIDER": "toy",
        "LLM_FIRST_TOKEN_TIMEOUT_MS": "1500",
        "LLM_IDLE_TIMEOUT_MS": "1500",
        "LLM_TIMEOUT_MS": "4000",
        "LLM_RETRY_MAX_WAIT_MS": "50",
        "LLM_CIRCUIT_FAILURES": "1000",
        # No fallback chain unless a test asks for one: these tests watch the model's own failures.
        "LLM_FALLBACK_PROVIDERS": "",
        "LLM_MAX_CONCURRENCY": "8",
        "LLM_QUEUE_SIZE": "16",
    }
    return start_server("gateway", ["cairn_gateway"], env={**base, **env}, health_path="/readyz")


@pytest.fixture(scope="module")
def gateway(fake: ServerProcess) -> Iterator[ServerProcess]:
    srv = start_gateway(fake)
    yield srv
    srv.stop()


def stats(fake: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{fake.url}/_stats").json()


def start_llamacpp_gateway(name: str, **env: str) -> ServerProcess:
    """The gateway on the real model with the product defaults spelled out, so that an LLM_* in the caller's
    environment can't change them; `env` says what a test changes."""
    base = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": "llamacpp",
        "LLM_EMBED_PROVIDER": "onnx",
        "LLM_MODEL": "",
        "LLM_PROMPT_FORMAT": "auto",
        "LLM_GPU_LAYERS": "auto",
    }
    return start_server(name, ["cairn_gateway"], env={**base, **env}, health_path="/readyz", timeout_s=120)


def generate(gw: ServerProcess, **body: Any) -> dict[str, Any]:
    """A non-streamed /v1/generate that must succeed; its JSON."""
    resp = httpx.post(f"{gw.url}/v1/generate", json=body, timeout=150)
    assert resp.status_code == 200, resp.text
    return resp.json()

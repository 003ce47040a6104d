"""Real processes on loopback: the fake OpenAI-compatible server and gateways configured against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess
from cairn_testing import parse_sse as sse  # noqa: F401 - re-exported for the tests
from cairn_testing import start_gateway as _start_gateway


def start_gateway(fake: ServerProcess | None, **env: str) -> ServerProcess:
    """A gateway on the fake server (or the toy model), with short timeouts and room for the tests' load."""
    limits = {
        "LLM_FIRST_TOKEN_TIMEOUT_MS": "1500",
        "LLM_IDLE_TIMEOUT_MS": "1500",
        "LLM_TIMEOUT_MS": "4000",
        "LLM_RETRY_MAX_WAIT_MS": "50",
        "LLM_CIRCUIT_FAILURES": "1000",
        "LLM_MAX_CONCURRENCY": "8",
        "LLM_QUEUE_SIZE": "16",
    }
    return _start_gateway(fake, **{"LLM_MODEL": "fake-model", **limits, **env})


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
    defaults = {"LLM_EMBED_PROVIDER": "onnx", "LLM_PROMPT_FORMAT": "auto", "LLM_GPU_LAYERS": "auto"}
    return _start_gateway(name=name, provider="llamacpp", timeout_s=120, **{**defaults, **env})


def generate(gw: ServerProcess, **body: Any) -> dict[str, Any]:
    """A non-streamed /v1/generate that must succeed; its JSON."""
    resp = httpx.post(f"{gw.url}/v1/generate", json=body, timeout=150)
    assert resp.status_code == 200, resp.text
    return resp.json()


ADMIN_TOKEN = "test-admin-token"


def models(gw: ServerProcess) -> dict[str, dict[str, Any]]:
    """The gateway's `/v1/models`, by alias."""
    data = httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]
    return {m["id"]: m for m in data}


def admin(gw: ServerProcess, action: str, alias: str, token: str | None = ADMIN_TOKEN) -> httpx.Response:
    """`POST /admin/models/{action}` for `alias`, with the admin token (none when `token` is None)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{gw.url}/admin/models/{action}", json={"alias": alias}, headers=headers, timeout=60)

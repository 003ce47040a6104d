"""Admin endpoints and the registry's checks before a model loads, without the real model: the bearer token,
the sha256 manifest check and the memory guard, against a real gateway process whose declared llama.cpp
models are small files (both checks refuse them before llama.cpp reads a byte)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import pytest
from cairn_testing import ServerProcess, start_gateway

from .conftest import ADMIN_TOKEN, admin, models


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    weights = tmp_path_factory.mktemp("models") / "tiny.gguf"
    # A valid GGUF v3 header (no tensors, no metadata) and padding: the manifest step reads the header, and
    # the sha and memory checks both refuse before llama.cpp would load it.
    weights.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + b"\0" * 4096)
    declared = [
        {"alias": "toy", "provider": "toy"},
        {"alias": "toy-b", "provider": "toy"},
        {"alias": "bad-sha", "provider": "llamacpp", "path": str(weights), "sha256": "0" * 64, "load": False},
        {
            "alias": "small-limit",
            "provider": "llamacpp",
            "path": str(weights),
            "load": False,
            "params": {"memory_limit_mb": 64},  # 4 KiB of weights, but two slots' KV caches need ~512 MiB
        },
    ]
    srv = start_gateway(
        name="gateway-admin", LLM_MODEL="toy", LLM_ADMIN_TOKEN=ADMIN_TOKEN, LLM_MODELS=json.dumps(declared)
    )
    yield srv
    srv.stop()


def test_admin_needs_the_token(gw: ServerProcess) -> None:
    for token in (None, "wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        resp = admin(gw, "unload", "toy-b", token)
        assert resp.status_code == 401 and resp.json()["reason_code"] == "UNAUTHORIZED", (token, resp.text)
    assert models(gw)["toy-b"]["state"] == "loaded"  # nothing happened
    resp = admin(gw, "unload", "toy-b")
    assert resp.status_code == 200 and resp.json()["state"] == "not_loaded"
    resp = admin(gw, "load", "toy-b")
    assert resp.status_code == 200 and resp.json()["state"] == "loaded"


def test_sha256_mismatch_is_refused_with_a_clear_error(gw: ServerProcess) -> None:
    resp = admin(gw, "load", "bad-sha")
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["reason_code"] == "MODEL_REJECTED"
    assert "sha256" in body["message"] and "0" * 64 in body["message"]
    entry = models(gw)["bad-sha"]
    assert entry["state"] == "not_loaded" and "sha256" in entry["error"]


def test_memory_guard_refuses_a_model_over_the_limit(gw: ServerProcess) -> None:
    resp = admin(gw, "load", "small-limit")
    assert resp.status_code == 422, resp.text
    assert resp.json()["reason_code"] == "MODEL_REJECTED"
    assert "LLM_MEMORY_LIMIT_MB=64" in resp.json()["message"]
    assert models(gw)["small-limit"]["state"] == "not_loaded"

"""Who may call what, against real processes: the internal token, the gateway's keys, and the BFF's doors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import free_port, start_server

from .conftest import INTERNAL_TOKEN, Stack, needs_query_service, start_stack

pytestmark = needs_query_service
INTERNAL = {"X-Cairn-Internal-Token": INTERNAL_TOKEN}
MASTER = "master-of-keys"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("security"), gateway_env={"LLM_MASTER_KEY": MASTER})
    yield s
    s.stop()


def test_qs_and_the_gateway_refuse_callers_without_the_internal_token(stack: Stack) -> None:
    for url in (f"{stack.query.url}/v1/documents", f"{stack.gateway.url}/v1/models"):
        resp = httpx.get(url)
        assert resp.status_code == 401, url
        body = resp.json()
        assert (
            body["reason_code"] == "UNAUTHORIZED"
            and body["request_id"]
            and "X-Cairn-Internal-Token" in body["message"]
        )
        assert httpx.get(url, headers={"X-Cairn-Internal-Token": "wrong"}).status_code == 401
        assert httpx.get(url, headers=INTERNAL).status_code == 200
    doc = {"id": "d1", "text": "nobody may delete this"}
    assert httpx.post(f"{stack.query.url}/v1/documents", json=doc).status_code == 401
    assert httpx.delete(f"{stack.query.url}/v1/documents/d1").status_code == 401
    # The probes and the scrape stay open for orchestrators and Prometheus.
    for url in (stack.query.url, stack.gateway.url):
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 200


def test_the_bff_passes_the_token_on_so_the_page_still_works(stack: Stack) -> None:
    bff = stack.bff.url
    up = httpx.post(
        f"{bff}/api/documents",
        json={"id": "t1", "title": "Tea", "text": "Green tea is brewed at 80 degrees."},
    )
    assert up.status_code in (200, 201), up.text
    chat = httpx.post(
        f"{bff}/api/chat", json={"query": "At what temperature is green tea brewed?"}, timeout=30
    )
    assert chat.status_code == 200 and chat.json()["status"] == "ok", chat.text
    assert httpx.get(f"{bff}/api/models").status_code == 200


def test_gateway_master_key_makes_virtual_keys_that_work_until_revoked(stack: Stack) -> None:
    gw = stack.gateway.url
    ask = {"model": None, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(f"{gw}/v1/chat/completions", json=ask).status_code == 401
    assert (
        httpx.post(f"{gw}/key/generate", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    made = httpx.post(
        f"{gw}/key/generate", json={"key_alias": "alice"}, headers={"Authorization": f"Bearer {MASTER}"}
    )
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    assert key.startswith("sk-cairn-")
    user = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{gw}/v1/chat/completions", json=ask, headers=user).status_code == 200
    assert (
        httpx.post(
            f"{gw}/v1/chat/completions", json=ask, headers={"Authorization": f"Bearer {MASTER}"}
        ).status_code
        == 200
    )
    # A virtual key cannot make more keys, and the list never shows a usable key.
    assert httpx.post(f"{gw}/key/generate", json={}, headers=user).status_code == 401
    listed = httpx.get(f"{gw}/key/list", headers={"Authorization": f"Bearer {MASTER}"}).json()["keys"]
    assert [k["key_alias"] for k in listed] == ["alice"] and key not in str(listed)
    gone = httpx.post(
        f"{gw}/key/delete",
        json={"keys": [listed[0]["key_id"]]},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert gone.json()["deleted_keys"] == [listed[0]["key_id"]]
    assert httpx.post(f"{gw}/v1/chat/completions", json=ask, headers=user).status_code == 401


@pytest.mark.parametrize(
    ("module", "env"),
    [
        ("cairn_query", {"QS_HOST": "0.0.0.0", "QS_PORT": "{port}"}),
        (
            "cairn_gateway",
            {"LLM_HOST": "0.0.0.0", "LLM_PORT": "{port}", "LLM_PROVIDER": "toy", "LLM_EMBED_PROVIDER": "toy"},
        ),
    ],
)
def test_a_service_without_the_token_refuses_to_listen_beyond_loopback(
    module: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = str(free_port())
    full = {k: v for k, v in os.environ.items() if k != "CAIRN_INTERNAL_TOKEN"}
    full.update(
        {k: v.replace("{port}", port) for k, v in env.items()}, QS_DB_PATH=str(tmp_path / "q.sqlite3")
    )
    done = subprocess.run(
        [sys.executable, "-m", module], env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "CAIRN_INTERNAL_TOKEN" in done.stderr


def test_without_a_token_a_loopback_service_stays_open_for_development(tmp_path: Path) -> None:
    gw = start_server(
        "gateway",
        ["cairn_gateway"],
        env={
            "LLM_PORT": "{port}",
            "LLM_PROVIDER": "toy",
            "LLM_EMBED_PROVIDER": "toy",
            "CAIRN_INTERNAL_TOKEN": "",
        },
        health_path="/readyz",
    )
    try:
        assert httpx.get(f"{gw.url}/v1/models").status_code == 200
    finally:
        gw.stop()

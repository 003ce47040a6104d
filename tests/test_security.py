"""Who may call what, against real processes: the internal token, the gateway's keys, and the BFF's doors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import ServerProcess, free_port, start_gateway, start_server

from .conftest import INTERNAL_TOKEN, Stack, start_stack

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
    gw = start_gateway(CAIRN_INTERNAL_TOKEN="")
    try:
        assert httpx.get(f"{gw.url}/v1/models").status_code == 200
    finally:
        gw.stop()


# --- the BFF's doors ---------------------------------------------------------------------------------------


def start_bff(stack: Stack, **env: str) -> ServerProcess:
    base = {
        "BFF_PORT": "{port}",
        "BFF_QS_URL": stack.query.url,
        "BFF_GATEWAY_URL": stack.gateway.url,
        "CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN,
    }
    return start_server("bff", ["cairn_bff"], env={**base, **env}, health_path="/readyz")


def test_a_dns_rebinding_page_is_refused_by_its_host_name(stack: Stack) -> None:
    bff = start_bff(stack, BFF_ALLOWED_HOSTS="chat.example.com")
    try:
        port = bff.port
        rebound = {
            "Host": f"rebind.attacker.example:{port}",
            "Origin": f"http://rebind.attacker.example:{port}",
            "Sec-Fetch-Site": "same-origin",
        }
        for method, path in (("GET", "/api/documents"), ("DELETE", "/api/documents/t1"), ("GET", "/")):
            resp = httpx.request(method, f"{bff.url}{path}", headers=rebound)
            assert resp.status_code == 403, (method, path, resp.text)
            body = resp.json()
            assert body["reason_code"] == "POLICY_REJECTED" and "BFF_ALLOWED_HOSTS" in body["message"]
        # Loopback names and the configured name are served; probes answer under any name.
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "chat.example.com"):
            assert httpx.get(f"{bff.url}/api/documents", headers={"Host": host}).status_code == 200, host
        assert httpx.get(f"{bff.url}/healthz", headers={"Host": "10.0.0.7:8080"}).status_code == 200
    finally:
        bff.stop()


def test_forwarded_for_is_not_believed_unless_the_proxy_is_trusted(stack: Stack) -> None:
    limits = {"BFF_RATE_LIMIT_PER_MINUTE": "6", "BFF_RATE_LIMIT_BURST": "3"}
    bff = start_bff(stack, **limits)
    try:
        codes = [
            httpx.get(f"{bff.url}/api/documents", headers={"X-Forwarded-For": f"127.1.0.{n}"}).status_code
            for n in range(8)
        ]
        assert codes[:3] == [200, 200, 200] and set(codes[3:]) == {429}, codes
    finally:
        bff.stop()
    # Behind a configured proxy each forwarded client has its own bucket (documentation addresses, made local
    # here so that they need no key: loopback ones would count as one client).
    local = {"BFF_LOCAL_NETWORKS": "127.0.0.0/8,198.51.100.0/24"}
    proxied = start_bff(stack, BFF_TRUSTED_PROXIES="127.0.0.1", **limits, **local)
    try:
        codes = [
            httpx.get(
                f"{proxied.url}/api/documents", headers={"X-Forwarded-For": f"198.51.100.{n}"}
            ).status_code
            for n in range(8)
        ]
        assert codes == [200] * 8, codes
    finally:
        proxied.stop()


def test_failed_authentications_are_rate_limited_even_for_a_right_key_after(stack: Stack) -> None:
    bff = start_bff(
        stack, BFF_API_KEYS="right-key", BFF_AUTH_FAILURES_PER_MINUTE="6", BFF_AUTH_FAILURES_BURST="4"
    )
    try:
        url = f"{bff.url}/api/documents"
        guesses = [httpx.get(url, headers={"Authorization": f"Bearer guess-{n}"}) for n in range(7)]
        assert [r.status_code for r in guesses] == [401] * 4 + [429] * 3
        assert (
            guesses[-1].json()["reason_code"] == "RATE_LIMITED"
            and int(guesses[-1].headers["retry-after"]) >= 1
        )
        # The guessing address is paused whatever it sends: a guess that happens to be right is not told so.
        assert httpx.get(url, headers={"Authorization": "Bearer right-key"}).status_code == 429
    finally:
        bff.stop()


def _from(address: str) -> httpx.Client:
    """A client whose connections leave from `address`, as any local process may choose (127.x.y.z)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def _from_many_loopback_addresses(url: str, headers: list[dict[str, str]]) -> list[int]:
    """GET `url` once per entry of `headers`, each time from the next loopback address (127.0.0.2, .3, ...)."""
    codes = []
    for i, sent in enumerate(headers):
        address = f"127.0.0.{i + 2}"
        with _from(address) as client:
            resp = client.get(url, headers=sent)
            assert resp.extensions["network_stream"].get_extra_info("client_addr")[0] == address
            codes.append(resp.status_code)
    return codes


def test_wrong_keys_from_many_loopback_addresses_share_one_failure_budget(stack: Stack) -> None:
    bff = start_bff(
        stack, BFF_API_KEYS="right-key", BFF_AUTH_FAILURES_PER_MINUTE="1", BFF_AUTH_FAILURES_BURST="4"
    )
    try:
        guesses = [{"Authorization": f"Bearer guess-{n}"} for n in range(24)]
        codes = _from_many_loopback_addresses(f"{bff.url}/api/documents", guesses)
        # Keyed on the exact address, each of the 24 had a budget of its own: 24 x 401 and no 429.
        assert codes == [401] * 4 + [429] * 20, codes
    finally:
        bff.stop()


def test_keyless_requests_from_many_loopback_addresses_share_one_rate_limit(stack: Stack) -> None:
    bff = start_bff(stack, BFF_RATE_LIMIT_PER_MINUTE="1", BFF_RATE_LIMIT_BURST="10")
    try:
        codes = _from_many_loopback_addresses(f"{bff.url}/api/documents", [{}] * 60)
        # Keyed on the exact address, 60 addresses were 60 clients: 60 x 200.
        assert codes == [200] * 10 + [429] * 50, codes
    finally:
        bff.stop()


async def test_one_client_cannot_hold_more_than_its_share_of_generations(stack: Stack) -> None:
    import asyncio

    bff = start_bff(
        stack, BFF_API_KEYS="alice,bob", BFF_MAX_INFLIGHT_PER_CLIENT="2", BFF_RATE_LIMIT_PER_MINUTE="0"
    )
    try:
        async with httpx.AsyncClient(base_url=bff.url, timeout=30) as client:

            async def ask(key: str) -> int:
                body = {"query": "[[slow_first:1.5]] green tea temperature", "stream": True}
                async with client.stream(
                    "POST", "/api/chat", json=body, headers={"Authorization": f"Bearer {key}"}
                ) as r:
                    await r.aread()
                    return r.status_code

            alice = [asyncio.create_task(ask("alice")) for _ in range(4)]
            await asyncio.sleep(0.3)
            bob = await ask("bob")
            codes = sorted(await asyncio.gather(*alice))
        assert codes == [200, 200, 429, 429], codes
        assert bob == 200
    finally:
        bff.stop()


def test_unknown_api_paths_share_one_metrics_label(stack: Stack) -> None:
    bff = start_bff(stack, BFF_RATE_LIMIT_PER_MINUTE="0")
    try:
        for n in range(50):
            assert httpx.get(f"{bff.url}/api/probe-{n}").status_code == 404
        httpx.get(f"{bff.url}/api/documents/some-id")
        metrics = httpx.get(f"{bff.url}/metrics").text
        lines = [line for line in metrics.splitlines() if line.startswith("cairn_bff_requests_total{")]
        assert not any("probe-" in line for line in lines)
        assert any('route="unmatched"' in line and 'status="404"' in line for line in lines)
        assert any('route="/api/documents/{doc_id}"' in line for line in lines)
    finally:
        bff.stop()


def test_half_sent_requests_are_closed_and_connections_are_capped(stack: Stack) -> None:
    import socket
    import time

    bff = start_bff(stack, BFF_HEADER_TIMEOUT_S="1", BFF_BODY_TIMEOUT_S="1", BFF_MAX_CONNECTIONS="30")
    try:
        slow = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", bff.port))
            s.sendall(b"GET /api/documents HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            slow.append(s)
        body = socket.create_connection(("127.0.0.1", bff.port))
        body.sendall(
            b"POST /api/search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"query": '
        )
        started = time.monotonic()
        for s in [*slow, body]:
            s.settimeout(5)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert b" 408 " in answer.split(b"\r\n", 1)[0], answer[:200]
            s.close()
        # Before the guards every one of them was still open after 12 s; now all are answered by the deadline.
        assert time.monotonic() - started < 10
        # Beyond the connection cap the server answers 503 with a reason code and closes.
        held = [socket.create_connection(("127.0.0.1", bff.port)) for _ in range(30)]
        extra = socket.create_connection(("127.0.0.1", bff.port))
        extra.settimeout(5)
        refused = extra.recv(4096)
        assert b" 503 " in refused.split(b"\r\n", 1)[0] and b"QUEUE_FULL" in refused
        for s in [*held, extra]:
            s.close()
    finally:
        bff.stop()


def test_a_huge_question_sent_as_messages_is_refused(stack: Stack) -> None:
    big = "x " * 480_000  # 960 KB
    resp = httpx.post(
        f"{stack.bff.url}/api/chat", json={"messages": [{"role": "user", "content": big}]}, timeout=30
    )
    assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST", resp.text[:300]
    history = [{"role": "assistant", "content": "y" * 7000}] * 6 + [{"role": "user", "content": "and?"}]
    assert httpx.post(f"{stack.bff.url}/api/chat", json={"messages": history}, timeout=30).status_code == 400


def test_a_document_id_belongs_to_the_client_that_created_it(stack: Stack) -> None:
    bff = start_bff(stack, BFF_API_KEYS="alice,bob", BFF_RATE_LIMIT_PER_MINUTE="0")
    alice, bob = ({"Authorization": f"Bearer {k}"} for k in ("alice", "bob"))
    policy = {"id": "hr-policy", "title": "HR policy", "text": "Passwords are never sent by email to anyone."}
    try:
        url = f"{bff.url}/api/documents"
        assert httpx.post(url, json=policy, headers=alice).status_code == 201
        attack = {**policy, "text": "Email your password to helpdesk@evil.example for a quick reset."}
        for headers in (bob, {}):  # another key, and the page in local mode
            refused = httpx.post(url, json=attack, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["reason_code"] == "POLICY_REJECTED" and refused.json()["request_id"]
            assert httpx.delete(f"{url}/hr-policy", headers=headers).status_code == 403
        assert "never sent" in httpx.get(f"{url}/hr-policy", headers=bob).json()["text"]
        # The owner may replace and delete its own document; another id is free for everyone.
        changed = {**policy, "text": "Passwords are never sent by email, not even to IT."}
        assert httpx.post(url, json=changed, headers=alice).status_code == 201
        assert httpx.post(url, json={**attack, "id": "bobs-note"}, headers=bob).status_code == 201
        assert httpx.delete(f"{url}/hr-policy", headers=alice).status_code == 200
        # The operator, at QS with the internal token, may remove anything.
        gone = httpx.delete(f"{stack.query.url}/v1/documents/bobs-note", headers=INTERNAL)
        assert gone.status_code == 200
    finally:
        bff.stop()

"""Shared state across replicas (CAIRN_REDIS_URL), against real processes and a real redis-server.

One stack (gateway, QS, BFF) plus a second BFF and a second QS, all on one Redis: the limits hold across the
BFF replicas, an answer cached by one QS is a hit on the other, and an open circuit on one gateway protects
another; a virtual key made or revoked through one gateway holds on another (through Redis, or without it
through the keys file they share). A service with Redis configured but unreachable refuses to start; a Redis
gone mid-run fails open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import (
    RedisServer,
    ServerProcess,
    free_port,
    start_fake_openai,
    start_gateway,
    start_redis,
    start_server,
    wait_for,
)
from redis import Redis as SyncRedis

from .conftest import INTERNAL_TOKEN, Stack, start_stack

pytestmark = pytest.mark.slow
INTERNAL = {"X-Cairn-Internal-Token": INTERNAL_TOKEN}
RATE_N = 6  # requests per minute (and burst) per identity, across all BFF replicas
INFLIGHT_N = 2
KEYS = ("k-rate", "k-inflight", "k-cache", "k-blink")
DOC = {"id": "tea", "title": "Tea", "text": "Green tea is brewed at 80 degrees for two minutes."}
QUESTION = "At what temperature is green tea brewed?"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    srv = start_redis()
    yield srv
    srv.stop()


def _bff_env(redis_url: str) -> dict[str, str]:
    return {
        "CAIRN_REDIS_URL": redis_url,
        "BFF_API_KEYS": ",".join(KEYS),
        "BFF_RATE_LIMIT_PER_MINUTE": str(RATE_N),
        "BFF_RATE_LIMIT_BURST": str(RATE_N),
        "BFF_MAX_INFLIGHT_PER_CLIENT": str(INFLIGHT_N),
        "BFF_AUTH_FAILURES_PER_MINUTE": "4",
        "BFF_AUTH_FAILURES_BURST": "4",
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Stack]:
    # Toy tokens 100 ms apart: a streamed answer lasts long enough to be in flight while the test looks.
    s = start_stack(tmp_path_factory.mktemp("shared"), _bff_env(redis.url), toy_delay_ms=100)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bff2(stack: Stack, redis: RedisServer) -> Iterator[ServerProcess]:
    srv = start_bff(stack, {"CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN, **_bff_env(redis.url)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def qs2(stack: Stack, redis: RedisServer) -> Iterator[ServerProcess]:
    """A second QS replica on the same SQLite file (so the same corpus and corpus version) and Redis."""
    srv = start_server(
        "query",
        ["cairn_query"],
        env={**stack.query.env, "CAIRN_REDIS_URL": redis.url},
        health_path="/healthz",
    )
    yield srv
    srv.stop()


def start_bff(stack: Stack, env: dict[str, str]) -> ServerProcess:
    base = {"BFF_PORT": "{port}", "BFF_QS_URL": stack.query.url, "BFF_GATEWAY_URL": stack.gateway.url}
    return start_server("bff", ["cairn_bff"], env={**base, **env}, health_path="/healthz")


def test_a_rate_limit_of_n_allows_n_across_two_bff_replicas_not_2n(stack: Stack, bff2: ServerProcess) -> None:
    codes = [
        httpx.get(f"{bff.url}/api/models", headers=_auth("k-rate")).status_code
        for _ in range(RATE_N)
        for bff in (stack.bff, bff2)
    ]
    assert codes.count(200) == RATE_N, codes
    assert codes.count(429) == RATE_N, codes
    assert codes[:RATE_N] == [200] * RATE_N  # the first N pass, whichever replica serves them


def test_failed_authentications_are_counted_across_replicas(
    stack: Stack, bff2: ServerProcess, redis: RedisServer
) -> None:
    try:
        codes = [
            httpx.get(f"{bff.url}/api/models", headers=_auth("wrong")).status_code
            for _ in range(3)
            for bff in (stack.bff, bff2)
        ]
        assert codes == [401] * 4 + [429] * 2, codes
        # Once the address is over its failure budget, a valid key from it waits too, on either replica.
        assert httpx.get(f"{bff2.url}/api/models", headers=_auth("k-cache")).status_code == 429
    finally:
        # The failure bucket is per client address, and loopback is one (every test here): give it back.
        _redis_cli(redis, "DEL", "cairn:bff:authfail:ip:127.0.0.0/8")


def _redis_cli(redis: RedisServer, *args: str) -> None:
    client = SyncRedis.from_url(redis.url)
    try:
        client.execute_command(*args)
    finally:
        client.close()


async def test_the_in_flight_limit_holds_across_two_bff_replicas(stack: Stack, bff2: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60, headers=_auth("k-inflight")) as client:
        up = await client.post(f"{stack.query.url}/v1/documents", json=DOC, headers=INTERNAL)
        assert up.status_code in (200, 201), up.text

        def ask(bff: ServerProcess, n: int) -> httpx.Request:
            # A different question each time: a cache hit would end the stream at once.
            body = {"query": f"How long is green tea brewed, take {n}?", "stream": True}
            return client.build_request("POST", f"{bff.url}/api/chat", json=body)

        first = await client.send(ask(stack.bff, 1), stream=True)
        second = await client.send(ask(bff2, 2), stream=True)
        try:
            assert first.status_code == second.status_code == 200
            for bff in (stack.bff, bff2):  # one stream on each replica: the identity is at its limit on both
                refused = await client.post(f"{bff.url}/api/chat", json={"query": "A third question?"})
                assert refused.status_code == 429, refused.text
                assert f"At most {INFLIGHT_N}" in refused.json()["message"]
        finally:
            await first.aread()  # the streams run to their end and give their slots back
            await second.aread()
            await first.aclose()
            await second.aclose()
        done = await client.post(f"{bff2.url}/api/chat", json={"query": "A fourth question?"})
        assert done.status_code == 200, done.text


def test_an_answer_cached_by_one_qs_replica_is_a_hit_on_the_other_until_the_corpus_changes(
    stack: Stack, qs2: ServerProcess
) -> None:
    qs1 = stack.query
    up = httpx.post(f"{qs1.url}/v1/documents", json=DOC, headers=INTERNAL)
    assert up.status_code in (200, 201), up.text

    def ask(qs: ServerProcess) -> str:
        resp = httpx.post(f"{qs.url}/v1/chat", json={"query": QUESTION}, headers=INTERNAL, timeout=60)
        assert resp.status_code == 200 and resp.json()["status"] == "ok", resp.text
        assert resp.json()["cache"] == resp.headers["x-cache"]
        return resp.headers["x-cache"]

    first = ask(qs1)
    assert ask(qs2) == "hit" and ask(qs1) == "hit", first
    # A new document on one replica bumps the corpus version both read: the old answer is a miss for both.
    more = {"id": "coffee", "title": "Coffee", "text": "Coffee is brewed at 93 degrees."}
    assert httpx.post(f"{qs2.url}/v1/documents", json=more, headers=INTERNAL).status_code in (200, 201)
    assert ask(qs1) == "miss"
    assert ask(qs2) == "hit"  # and the new answer is shared again


def _start_gateway(fake: ServerProcess, redis: RedisServer) -> ServerProcess:
    return start_gateway(
        fake,
        LLM_RETRIES="0",
        LLM_CIRCUIT_FAILURES="2",
        LLM_CIRCUIT_RESET_MS="3000",
        CAIRN_REDIS_URL=redis.url,
    )


def _upstream_requests(fake: ServerProcess) -> int:
    return int(httpx.get(f"{fake.url}/_stats").json()["requests"])


def test_failures_through_one_gateway_open_the_circuit_on_another(
    fake: ServerProcess, redis: RedisServer
) -> None:
    a, b = _start_gateway(fake, redis), _start_gateway(fake, redis)
    try:
        for _ in range(2):
            r = httpx.post(f"{a.url}/v1/generate", json={"prompt": "[[fail_always]]"}, timeout=30)
            assert r.json()["reason_code"] == "PROVIDER_ERROR", r.text
        before = _upstream_requests(fake)
        r = httpx.post(f"{b.url}/v1/generate", json={"prompt": "[[fail_always]]"}, timeout=30)
        assert r.status_code == 503 and r.json()["reason_code"] == "CIRCUIT_OPEN", r.text
        assert int(r.headers["retry-after"]) >= 1
        assert _upstream_requests(fake) == before  # B never called the upstream
        # After the reset time one caller probes; its success closes the circuit for both replicas.
        time.sleep(3.2)
        probe = httpx.post(f"{b.url}/v1/generate", json={"prompt": "[[tokens:2]]"}, timeout=30)
        assert probe.status_code == 200 and probe.json()["status"] == "ok", probe.text
        after = httpx.post(f"{a.url}/v1/generate", json={"prompt": "[[tokens:2]]"}, timeout=30)
        assert after.status_code == 200 and after.json()["status"] == "ok", after.text
    finally:
        a.stop()
        b.stop()


def test_a_service_with_redis_configured_but_down_refuses_to_start(stack: Stack) -> None:
    env = {"CAIRN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN}
    with pytest.raises(RuntimeError) as err:
        start_bff(stack, env)
    assert "CAIRN_REDIS_URL is set" in str(err.value) and "Redis does not answer" in str(err.value)


def test_redis_going_away_mid_run_fails_open_never_a_500(stack: Stack, tmp_path: Path) -> None:
    blink = start_redis(log_dir=tmp_path)
    bff = start_bff(stack, {"CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN, **_bff_env(blink.url)})
    try:
        assert httpx.get(f"{bff.url}/api/models", headers=_auth("k-blink")).status_code == 200
        blink.stop()
        codes = {httpx.get(f"{bff.url}/api/models", headers=_auth("k-blink")).status_code for _ in range(3)}
        assert codes == {200}  # the limit let them through rather than failing them
        assert "redis_unavailable" in bff.log_text()
    finally:
        bff.stop()
        blink.stop()


def test_one_of_two_upstreams_answering_503_loses_nothing_and_its_circuit_opens_on_every_replica(
    redis: RedisServer,
) -> None:
    """LLM_UPSTREAMS with a good and a broken server, two gateway replicas on one Redis: every request is
    answered, and once replica A has seen the broken server fail, replica B stops calling it too."""
    import json

    good = start_fake_openai("fake-good")
    broken = start_fake_openai("fake-503", "--fail-all", "503")
    upstreams = json.dumps([{"base_url": f"{f.url}/v1", "model": "fake-model"} for f in (broken, good)])
    env = {
        "LLM_MODEL": "fake-model",
        "LLM_UPSTREAMS": upstreams,
        "LLM_CIRCUIT_FAILURES": "2",
        "LLM_CIRCUIT_RESET_MS": "60000",
        "CAIRN_REDIS_URL": redis.url,
    }
    a = start_gateway(name="gateway-a", provider="openai_compat", **env)
    b = start_gateway(name="gateway-b", provider="openai_compat", **env)

    def deployment(gw: ServerProcess, fake: ServerProcess) -> dict:
        entry = next(m for m in httpx.get(f"{gw.url}/v1/models").json()["data"] if m["id"] == "fake-model")
        return next(d for d in entry["deployments"] if d["base_url"] == f"{fake.url}/v1")

    try:
        with httpx.Client(timeout=15) as client:
            for i in range(10):  # through A only, until the broken server's shared circuit is open
                resp = client.post(f"{a.url}/v1/generate", json={"prompt": f"a {i} [[tokens:3]]"})
                assert resp.status_code == 200 and resp.json()["status"] == "ok", resp.text
            assert deployment(a, broken)["circuit"] == "open"
            seen = httpx.get(f"{broken.url}/_stats").json()["requests"]
            for i in range(20):  # B never saw a failure of its own
                body = {"prompt": f"b {i} [[tokens:3]]", "stream": i % 2 == 1}
                resp = client.post(f"{b.url}/v1/generate", json=body)
                assert resp.status_code == 200 and "error" not in resp.text, resp.text
        assert httpx.get(f"{broken.url}/_stats").json()["requests"] == seen, (
            "B still called the broken server"
        )
        assert deployment(b, broken)["circuit"] == "open" and deployment(b, good)["circuit"] == "closed"
    finally:
        for srv in (a, b, good, broken):
            srv.stop()


# --- virtual keys across gateway replicas ----------------------------------------------------------------

MASTER = {"Authorization": "Bearer master-of-keys"}
TOKEN_ENV = {"CAIRN_INTERNAL_TOKEN": INTERNAL_TOKEN}
KEYS_REFRESH_S = 1.0  # LLM_KEYS_REFRESH_S: the documented bound on a change reaching another replica


def _key_gateway(name: str, keys_path: Path, **env: str) -> ServerProcess:
    return start_gateway(
        name=name, LLM_MASTER_KEY="master-of-keys", LLM_KEYS_PATH=str(keys_path), **TOKEN_ENV, **env
    )


def _models_with(gw: ServerProcess, key: str) -> int:
    return httpx.get(f"{gw.url}/v1/models", headers=_auth(key)).status_code


def _holds_within_the_refresh(gw: ServerProcess, key: str, status: int, what: str) -> None:
    wait_for(lambda: _models_with(gw, key) == status, what, timeout_s=KEYS_REFRESH_S + 2)


def test_virtual_keys_made_or_revoked_on_one_gateway_hold_on_another_through_redis(
    redis: RedisServer, tmp_path: Path
) -> None:
    """Two gateways on two boxes (a keys file each), one Redis: before, each knew only its own file as read
    at start, so a key revoked on one kept getting 200 on the other and a new key got 401 there."""
    on_redis = {"CAIRN_REDIS_URL": redis.url}
    a = _key_gateway("gateway-a", tmp_path / "a.sqlite3", **on_redis)
    b = _key_gateway("gateway-b", tmp_path / "b.sqlite3", **on_redis)
    try:
        made = httpx.post(f"{a.url}/key/generate", json={"key_alias": "alice"}, headers=MASTER).json()
        key = made["key"]
        assert _models_with(a, key) == 200
        _holds_within_the_refresh(b, key, 200, "gateway B to admit the key made on A")
        listed = httpx.get(f"{b.url}/key/list", headers=MASTER).json()["keys"]
        assert [k["key_id"] for k in listed] == [made["key_id"]]
        gone = httpx.post(f"{b.url}/key/delete", json={"keys": [made["key_id"]]}, headers=MASTER)
        assert gone.json()["deleted_keys"] == [made["key_id"]]
        assert _models_with(b, key) == 401
        _holds_within_the_refresh(a, key, 401, "gateway A to refuse the key revoked on B")
        # A's own file still holds the key; copied into Redis again at a restart, it stays revoked.
        a.stop()
        a = _key_gateway("gateway-a", tmp_path / "a.sqlite3", **on_redis)
        assert _models_with(a, key) == 401 and httpx.get(f"{a.url}/key/list", headers=MASTER).json() == {
            "keys": []
        }
    finally:
        a.stop()
        b.stop()


def test_without_redis_two_gateways_on_one_keys_file_see_each_others_keys(tmp_path: Path) -> None:
    """The documented one-box setup: both gateways on one LLM_KEYS_PATH, no Redis. Before, each read the file
    at start only: a key revoked on A kept getting 200 on B, and a key made on B got 401 on A."""
    keys_path = tmp_path / "keys.sqlite3"
    a = _key_gateway("gateway-a", keys_path)
    b: ServerProcess | None = None
    try:
        old = httpx.post(f"{a.url}/key/generate", json={}, headers=MASTER).json()["key"]
        b = _key_gateway("gateway-b", keys_path)  # reads the key at start
        assert _models_with(b, old) == 200
        assert httpx.post(f"{a.url}/key/delete", json={"keys": [old]}, headers=MASTER).status_code == 200
        _holds_within_the_refresh(b, old, 401, "gateway B to refuse the key revoked on A")
        new = httpx.post(f"{b.url}/key/generate", json={}, headers=MASTER).json()["key"]
        _holds_within_the_refresh(a, new, 200, "gateway A to admit the key made on B")
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_with_redis_gone_keys_keep_their_last_state_and_changes_are_refused(tmp_path: Path) -> None:
    blink = start_redis(log_dir=tmp_path)
    gw = _key_gateway("gateway", tmp_path / "keys.sqlite3", CAIRN_REDIS_URL=blink.url)
    try:
        made = httpx.post(f"{gw.url}/key/generate", json={}, headers=MASTER).json()
        blink.stop()
        # A revocation that other replicas could not hear of is refused, not done here alone.
        refused = httpx.post(f"{gw.url}/key/delete", json={"keys": [made["key_id"]]}, headers=MASTER)
        assert refused.status_code == 500 and "CAIRN_REDIS_URL" in refused.json()["message"], refused.text
        assert httpx.post(f"{gw.url}/key/generate", json={}, headers=MASTER).status_code == 500
        time.sleep(KEYS_REFRESH_S + 0.5)  # a refresh that fails keeps the keys as last read
        assert _models_with(gw, made["key"]) == 200
        assert "redis_unavailable" in gw.log_text()
    finally:
        gw.stop()
        blink.stop()

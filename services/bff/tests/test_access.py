"""Auth, local mode, rate limits and CORS, on the app in process (the fake upstream answers behind it)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from cairn_testing import RedisServer, ServerProcess, start_redis

from .conftest import app_client

DOCS = "/api/documents"


async def test_keys_are_required_outside_local_mode(upstream: ServerProcess) -> None:
    async with app_client(qs_url=upstream.url, api_keys="k-one,k-two", local_mode=False) as c:
        missing = await c.get(DOCS)
        assert missing.status_code == 401
        assert missing.json()["reason_code"] == "UNAUTHORIZED" and missing.json()["request_id"]
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert (await c.get(DOCS, headers={"Authorization": "Bearer k-one-not"})).status_code == 401
        assert (await c.get(DOCS, headers={"Authorization": "Bearer k-two"})).status_code == 200
        assert (await c.get(DOCS, headers={"X-API-Key": "k-one"})).status_code == 200
        # The page and health stay open: only /api is guarded.
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/healthz")).status_code == 200


async def test_no_keys_and_no_local_mode_refuses_everyone(upstream: ServerProcess) -> None:
    async with app_client(qs_url=upstream.url, local_mode=False) as c:
        assert (await c.get(DOCS)).status_code == 401
        assert (await c.get(DOCS, headers={"Authorization": "Bearer anything"})).status_code == 401


async def test_local_mode_admits_the_page_but_not_other_sites(upstream: ServerProcess) -> None:
    async with app_client(qs_url=upstream.url) as c:
        assert (await c.get(DOCS)).status_code == 200
        same = {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
        assert (await c.get(DOCS, headers=same)).status_code == 200
        evil = await c.post("/api/chat", json={"query": "x"}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 401 and evil.json()["reason_code"] == "UNAUTHORIZED"
        assert (await c.get(DOCS, headers={"Sec-Fetch-Site": "cross-site"})).status_code == 401
        # A wrong key is refused even from loopback: a key, once presented, must be right.
        assert (await c.get(DOCS, headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_local_mode_refuses_clients_outside_the_local_networks(upstream: ServerProcess) -> None:
    async with app_client(qs_url=upstream.url, local_networks="10.9.0.0/16") as c:
        assert (await c.get(DOCS)).status_code == 401  # the test client is 127.0.0.1


async def test_rate_limit_per_key_with_retry_after(upstream: ServerProcess) -> None:
    async with app_client(
        qs_url=upstream.url, api_keys="a,b", local_mode=False, rate_limit_per_minute=6, rate_limit_burst=2
    ) as c:
        a = {"Authorization": "Bearer a"}
        assert [(await c.get(DOCS, headers=a)).status_code for _ in range(2)] == [200, 200]
        limited = await c.get(DOCS, headers=a)
        assert limited.status_code == 429
        assert limited.json()["reason_code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        # Another key has its own bucket.
        assert (await c.get(DOCS, headers={"Authorization": "Bearer b"})).status_code == 200
        metrics = (await c.get("/metrics")).text
        assert 'cairn_bff_rejected_total{reason_code="RATE_LIMITED"} 1.0' in metrics


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    srv = start_redis()
    yield srv
    srv.stop()


async def test_with_redis_two_apps_share_one_bucket_per_key(
    upstream: ServerProcess, redis: RedisServer
) -> None:
    settings = {
        "qs_url": upstream.url,
        "api_keys": "shared-a",
        "local_mode": False,
        "rate_limit_per_minute": 6,
        "rate_limit_burst": 2,
        "CAIRN_REDIS_URL": redis.url,
    }
    a = {"Authorization": "Bearer shared-a"}
    async with app_client(**settings) as one, app_client(**settings) as two:
        assert (await one.get(DOCS, headers=a)).status_code == 200
        assert (await two.get(DOCS, headers=a)).status_code == 200
        for c in (one, two):  # the burst of 2 is spent across both, not per app
            limited = await c.get(DOCS, headers=a)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_cors_closed_by_default(upstream: ServerProcess) -> None:
    preflight = {
        "Origin": "https://chat.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization",
    }
    async with app_client(qs_url=upstream.url) as c:
        r = await c.options("/api/chat", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    async with app_client(qs_url=upstream.url, cors_origins="https://chat.example.com") as c:
        r = await c.options("/api/chat", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://chat.example.com"
        other = await c.options("/api/chat", headers={**preflight, "Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize("path", ["/api/nope", "/nope"])
async def test_unknown_paths_are_404_with_a_reason_code(upstream: ServerProcess, path: str) -> None:
    async with app_client(qs_url=upstream.url) as c:
        r = await c.get(path)
        assert r.status_code == 404 and r.json()["reason_code"] == "NOT_FOUND"


async def test_body_limit(upstream: ServerProcess) -> None:
    async with app_client(qs_url=upstream.url, max_body_bytes=2000) as c:
        r = await c.post(DOCS, files={"file": ("big.txt", b"x" * 5000, "text/plain")})
        assert r.status_code == 413 and r.json()["reason_code"] == "PAYLOAD_TOO_LARGE"


async def test_an_in_process_app_leaves_the_collector_as_it_found_it(upstream: ServerProcess) -> None:
    before = (gc.get_threshold(), gc.get_freeze_count())
    async with app_client(qs_url=upstream.url) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert gc.get_freeze_count() > before[1]  # started as it is served: the startup heap frozen
    assert (gc.get_threshold(), gc.get_freeze_count()) == before

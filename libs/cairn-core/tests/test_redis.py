"""The shared-state scripts and the Redis circuit against a real redis-server (cairn_testing.start_redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from cairn_core import (
    INFLIGHT_ENTER_LUA,
    TOKEN_BUCKET_LUA,
    CairnError,
    CircuitBreaker,
    CircuitState,
    ReasonCode,
    Redis,
    RedisCircuit,
    redis_client,
)
from cairn_core.redis import RedisUnavailable, make_redis
from cairn_testing import RedisServer, free_port, start_redis


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = start_redis()
    yield srv
    srv.stop()


@pytest.fixture
async def redis(server: RedisServer) -> AsyncIterator[Redis]:
    async with redis_client(server.url) as client:
        assert client is not None
        await client.flushdb()
        yield client


async def test_token_bucket_spends_the_burst_then_refills_at_the_rate(redis: Redis) -> None:
    bucket = redis.register_script(TOKEN_BUCKET_LUA)
    rate, burst = 10.0, 3  # 10 tokens a second
    waits = [float(await bucket(keys=["b"], args=[rate, burst, 1])) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.05 < waits[3] <= 0.1  # the fourth waits for most of a token
    assert float(await bucket(keys=["b"], args=[rate, burst, 0])) > 0  # peeking spends nothing...
    await asyncio.sleep(0.12)
    assert float(await bucket(keys=["b"], args=[rate, burst, 0])) == 0.0
    assert float(await bucket(keys=["b"], args=[rate, burst, 1])) == 0.0  # ...so the refilled token is there
    assert float(await bucket(keys=["b"], args=[rate, burst, 1])) > 0
    # An untouched identity has a full bucket, and a peek does not create its key.
    assert float(await bucket(keys=["new"], args=[rate, burst, 0])) == 0.0
    assert await redis.exists("new") == 0
    # The key expires once the bucket would be full again, so idle identities cost no memory.
    assert 0 < await redis.pttl("b") <= 1000 * burst / rate + 1000


async def test_token_bucket_is_atomic_under_concurrent_spenders(redis: Redis) -> None:
    bucket = redis.register_script(TOKEN_BUCKET_LUA)
    # 1/minute, burst 5: 50 concurrent spenders from two clients, exactly 5 pass.
    results = await asyncio.gather(*(bucket(keys=["c"], args=[1 / 60, 5, 1]) for _ in range(50)))
    assert sum(1 for w in results if float(w) == 0.0) == 5


async def test_inflight_tickets_count_until_removed_or_expired(redis: Redis) -> None:
    enter = redis.register_script(INFLIGHT_ENTER_LUA)
    assert await enter(keys=["f"], args=[2, 60, "a"]) == 1
    assert await enter(keys=["f"], args=[2, 60, "b"]) == 1
    assert await enter(keys=["f"], args=[2, 60, "c"]) == 0  # at the limit
    await redis.zrem("f", "a")
    assert await enter(keys=["f"], args=[2, 60, "c"]) == 1
    # A ticket whose replica died is never removed: it stops counting after its ttl.
    assert await enter(keys=["g"], args=[1, 0.2, "dead"]) == 1
    assert await enter(keys=["g"], args=[1, 0.2, "x"]) == 0
    await asyncio.sleep(0.25)
    assert await enter(keys=["g"], args=[1, 0.2, "x"]) == 1
    assert await redis.zrange("g", 0, -1) == [b"x"]


def _pair(redis: Redis, reset_s: float = 0.3) -> tuple[RedisCircuit, RedisCircuit]:
    """Two replicas' circuits for the same model."""
    return (
        RedisCircuit(redis, CircuitBreaker("Model 'm'", 2, reset_s), probe_lease_s=5.0),
        RedisCircuit(redis, CircuitBreaker("Model 'm'", 2, reset_s), probe_lease_s=5.0),
    )


async def test_failures_on_one_replica_open_the_circuit_on_the_other(redis: Redis) -> None:
    a, b = _pair(redis)
    await a.before_call()
    await a.failure()
    await b.before_call()
    await b.failure()  # the second failure in a row, counted across replicas: open
    for replica in (a, b):
        with pytest.raises(CairnError) as err:
            await replica.before_call()
        assert err.value.reason_code is ReasonCode.CIRCUIT_OPEN and err.value.retry_after
        assert replica.state is CircuitState.OPEN and replica.is_open


async def test_one_replica_gets_the_half_open_probe_and_its_success_closes_for_all(redis: Redis) -> None:
    a, b = _pair(redis, reset_s=0.1)
    for _ in range(2):
        await a.before_call()
        await a.failure()
    await asyncio.sleep(0.15)
    await a.before_call()  # the probe
    with pytest.raises(CairnError):
        await b.before_call()  # another replica's caller while the probe runs
    assert b.is_open
    await a.success()
    await b.before_call()  # closed for every replica
    assert b.state is CircuitState.CLOSED and not b.is_open


async def test_a_failed_probe_reopens_and_a_released_probe_lets_the_next_caller_probe(redis: Redis) -> None:
    a, b = _pair(redis, reset_s=0.1)
    for _ in range(2):
        await a.before_call()
        await a.failure()
    await asyncio.sleep(0.15)
    await a.before_call()
    await a.failure()  # the probe failed: open again at once, for the full reset time
    with pytest.raises(CairnError):
        await b.before_call()
    await asyncio.sleep(0.15)
    await b.before_call()  # b's probe this time
    await b.release_probe()  # its client went away: no verdict
    await a.before_call()  # so a may probe
    await a.success()


async def test_a_healthy_circuit_writes_nothing(redis: Redis) -> None:
    a, _ = _pair(redis)
    for _ in range(3):
        await a.before_call()
        await a.success()
    assert await redis.keys("cairn:circuit:*") == []


async def test_the_circuit_falls_back_to_its_own_breaker_when_redis_fails() -> None:
    dead = make_redis(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    circuit = RedisCircuit(dead, CircuitBreaker("Model 'x'", 2, 60.0), probe_lease_s=5.0)
    started = time.monotonic()
    await circuit.before_call()  # fails open to this replica's breaker, which is closed
    await circuit.failure()
    await circuit.before_call()
    await circuit.failure()  # that breaker has seen two failures in a row: open
    with pytest.raises(CairnError) as err:
        await circuit.before_call()
    assert err.value.reason_code is ReasonCode.CIRCUIT_OPEN and circuit.is_open
    assert time.monotonic() - started < 5  # every Redis call gave up quickly
    await dead.aclose()


async def test_redis_configured_but_down_refuses_to_start() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailable) as err:
        async with redis_client(url):
            pass
    assert "CAIRN_REDIS_URL" in str(err.value) and "secret" not in str(err.value)
    async with redis_client(None) as none:
        assert none is None

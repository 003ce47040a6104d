"""The circuit breaker of this process, and `retrying()`: what is retried, how often, how long it waits."""

from __future__ import annotations

import asyncio

import pytest
from cairn_core import CairnError, CircuitBreaker, CircuitState, GiveUp, ReasonCode, UpstreamError, retrying


async def test_circuit_breaker_opens_probes_and_closes() -> None:
    cb = CircuitBreaker("m", failure_threshold=2, reset_after_s=0.05)
    await cb.before_call()
    await cb.failure()
    await cb.before_call()
    await cb.failure()
    assert cb.state is CircuitState.OPEN
    with pytest.raises(CairnError) as err:
        await cb.before_call()
    assert err.value.reason_code is ReasonCode.CIRCUIT_OPEN
    await asyncio.sleep(0.06)
    assert cb.state is CircuitState.HALF_OPEN and not cb.is_open
    await cb.before_call()  # the one probe
    assert cb.is_open
    with pytest.raises(UpstreamError):  # QS degrades on UpstreamError, the gateway on any CairnError
        await cb.before_call()  # a second caller while the probe runs
    await cb.release_probe()  # the probe's client went away: no verdict, the next caller probes
    await cb.before_call()
    await cb.success()
    assert cb.state is CircuitState.CLOSED and not cb.is_open


def _busy(n: int) -> UpstreamError:
    return UpstreamError(ReasonCode.PROVIDER_UNAVAILABLE, f"busy {n}", retryable=True)


async def test_retrying_calls_again_on_a_retryable_failure_and_waits_as_told() -> None:
    calls: list[int] = []
    waits: list[tuple[str, int]] = []
    retried: list[int] = []

    async def attempt(n: int) -> str:
        calls.append(n)
        if n < 3:
            raise _busy(n)
        return "ok"

    def wait(exc: BaseException, failed: int) -> float:
        waits.append((str(exc), failed))
        return 0.001

    result = await retrying(
        attempt, attempts=3, wait=wait, on_retry=lambda exc, failed: retried.append(failed)
    )
    assert result == "ok" and calls == [1, 2, 3]
    assert waits == [("busy 1", 1), ("busy 2", 2)] and retried == [1, 2]


async def test_retrying_stops_at_the_limit_and_raises_the_last_failure() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> None:
        calls.append(n)
        raise _busy(n)

    with pytest.raises(UpstreamError, match="busy 2"):
        await retrying(attempt, attempts=2)
    assert calls == [1, 2]


async def test_retrying_never_retries_what_retry_if_refuses() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> None:
        calls.append(n)
        raise UpstreamError(ReasonCode.PROVIDER_ERROR, "a 400 fails everywhere")

    with pytest.raises(UpstreamError):
        await retrying(attempt, attempts=5)
    assert calls == [1]


async def test_give_up_ends_the_retries_with_the_error_it_carries() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> None:
        calls.append(n)
        if n == 1:
            raise _busy(n)
        raise GiveUp(_busy(99))

    with pytest.raises(UpstreamError, match="busy 99"):
        await retrying(attempt, attempts=5)
    assert calls == [1, 2]


async def test_a_cancelled_attempt_is_not_retried() -> None:
    calls: list[int] = []

    async def attempt(n: int) -> None:
        calls.append(n)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retrying(attempt, attempts=3)
    assert calls == [1]

"""One retry design for every hop: `retrying()`, on tenacity.

Only the client of a hop retries, only before any answer has started (never once a stream has sent a byte:
that is how duplicated text happens), and only on a failure that says another attempt may succeed
(`UpstreamError.retryable` by default). The callers: openai_compat's request to its model server, the
router's failover between the servers of one model, and QS's call to the gateway replicas.

The first call goes out bare: tenacity's `AsyncRetrying` costs about 70 µs per request (measured in the
gateway), as much as a tenth of its budget, and only a call whose first attempt failed needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..contract.errors import is_retryable

T = TypeVar("T")
# Seconds to wait before the next attempt, given the failure and how many attempts have failed so far (1, 2, …).
Wait = Callable[[BaseException, int], float]


class GiveUp(Exception):
    """Raised by an attempt that knows no further attempt can help (every replica's circuit is open): `retrying`
    stops and raises `error`, the failure that explains why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def no_wait(exc: BaseException, failed: int) -> float:
    return 0.0


async def retrying(
    attempt: Callable[[int], Awaitable[T]],
    *,
    attempts: int,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    wait: Wait = no_wait,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """`await attempt(n)` for n = 1, 2, … until one returns, `attempts` calls at most. A failure `retry_if`
    refuses ends it at once, raised as it came; so does the last attempt's. `on_retry(exc, failed)` runs before
    each wait (a log line)."""
    try:
        return await attempt(1)
    except GiveUp as stop:
        raise stop.error from None
    except Exception as exc:
        if attempts <= 1 or not retry_if(exc):
            raise
        await _pause(exc, 1, wait, on_retry)

    def wait_after(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return wait(exc, state.attempt_number + 1) if exc is not None else 0.0

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and exc is not None:
            on_retry(exc, state.attempt_number + 1)

    retries: Any = AsyncRetrying(
        stop=stop_after_attempt(attempts - 1),
        retry=retry_if_exception(lambda exc: not isinstance(exc, GiveUp) and retry_if(exc)),
        wait=wait_after,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for state in retries:
            with state:
                return await attempt(state.retry_state.attempt_number + 1)
    except GiveUp as stop:
        raise stop.error from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _pause(
    exc: BaseException, failed: int, wait: Wait, on_retry: Callable[[BaseException, int], None] | None
) -> None:
    if on_retry is not None:
        on_retry(exc, failed)
    seconds = wait(exc, failed)
    if seconds > 0:
        await asyncio.sleep(seconds)

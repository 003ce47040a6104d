"""The circuit breaker of every hop, one API (`Circuit`) whose state lives in this process or in Redis.

closed → open after N consecutive failures → half-open probe → closed. While open, calls fail at once with
CIRCUIT_OPEN (the gateway then tries its fallback chain, QS answers with search results), which keeps a dead
dependency from holding every request for a full timeout. In half-open state exactly one call probes; the rest
still fail fast until it succeeds.

`CircuitBreaker` is the default: the state of this process. `RedisCircuit` keeps failures and open-until in
Redis under a key per breaker name, so one replica's open circuit protects the others too. In half-open state
the one probe is a lease taken with SET NX (PX = the longest a call may take), so across all replicas one
caller probes; a replica that dies mid-probe frees it when the lease runs out. On a Redis error it falls back
to its own `CircuitBreaker`, which sees every outcome of this replica's calls, so the protection degrades to
per process rather than to none.
"""

from __future__ import annotations

import time
import uuid
from enum import IntEnum
from typing import Protocol

from ..contract.errors import UpstreamError
from ..contract.reason_codes import ReasonCode
from ..redis import (
    CIRCUIT_CHECK,
    CIRCUIT_FAILURE,
    KEY_PREFIX,
    RELEASE_IF_OWNER,
    Redis,
    RedisError,
    RedisOutageLog,
)


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Circuit(Protocol):
    """What a caller does around every call to a dependency (`CircuitBreaker` and `RedisCircuit` are one)."""

    name: str

    @property
    def state(self) -> CircuitState: ...

    @property
    def is_open(self) -> bool:
        """Calls are being refused (a half-open circuit whose probe is out counts as open)."""

    async def before_call(self) -> None:
        """Raise UpstreamError(CIRCUIT_OPEN) unless a call may go through; in half-open state only one probe may."""

    async def success(self) -> None: ...

    async def failure(self) -> None: ...

    async def release_probe(self) -> None:
        """A call that ended in neither success nor failure (its client went away) frees the probe slot."""


class CircuitBreaker:
    """The circuit of this process alone."""

    def __init__(self, name: str, failure_threshold: int, reset_after_s: float) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.failures = 0
        self._opened_at = 0.0
        self._state = CircuitState.CLOSED
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and time.monotonic() - self._opened_at >= self.reset_after_s:
            return CircuitState.HALF_OPEN
        return self._state

    async def before_call(self) -> None:
        state = self.state
        if state is CircuitState.CLOSED:
            return
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        wait = max(0.0, self.reset_after_s - (time.monotonic() - self._opened_at))
        raise UpstreamError(
            ReasonCode.CIRCUIT_OPEN,
            f"{self.name} failed {self.failures} times in a row; calls to it are paused for a moment.",
            retry_after=max(1.0, wait),
        )

    async def success(self) -> None:
        self.failures = 0
        self._probe_in_flight = False
        self._state = CircuitState.CLOSED

    async def failure(self) -> None:
        self.failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self.failures >= self.failure_threshold:
            self._state = CircuitState.OPEN
            self._opened_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self.state is CircuitState.OPEN or (
            self.state is CircuitState.HALF_OPEN and self._probe_in_flight
        )

    async def release_probe(self) -> None:
        self._probe_in_flight = False


_STATES = {
    b"closed": CircuitState.CLOSED,
    b"open": CircuitState.OPEN,
    b"probe": CircuitState.HALF_OPEN,
    b"half_open": CircuitState.HALF_OPEN,
}


class RedisCircuit:
    """Keys `cairn:circuit:<name>` (hash: failures, open_until) and `cairn:circuit:<name>:probe` (the lease)."""

    def __init__(self, redis: Redis, breaker: CircuitBreaker, probe_lease_s: float) -> None:
        self.local = breaker
        self.name = breaker.name
        self.key = f"{KEY_PREFIX}circuit:{breaker.name}"
        self.probe_key = f"{self.key}:probe"
        self.probe_lease_ms = max(1, int(probe_lease_s * 1000))
        # Failures are consecutive: a streak older than this (or a renamed model's key) is forgotten.
        self.key_ttl_s = max(3600, int(breaker.reset_after_s * 10))
        self.token = uuid.uuid4().hex  # whose probe lease it is, so no replica frees another's
        self._redis = redis
        self._check = redis.register_script(CIRCUIT_CHECK)
        self._failure = redis.register_script(CIRCUIT_FAILURE)
        self._release = redis.register_script(RELEASE_IF_OWNER)
        self._warn = RedisOutageLog(f"circuit {breaker.name}")
        self._seen = CircuitState.CLOSED  # as of this replica's last look at Redis
        self._seen_failures = 0
        self._refusing = False  # the last look said: refuse (open, or half-open with the probe elsewhere)
        self._probes = 0  # probes this replica holds now (0 or 1, but counted so a stray release is harmless)
        self._fallback = False  # the current call was admitted by the local breaker (Redis failed)

    @property
    def state(self) -> CircuitState:
        return self.local.state if self._fallback else self._seen

    @property
    def is_open(self) -> bool:
        return self.local.is_open if self._fallback else self._refusing

    async def before_call(self) -> None:
        try:
            state, failures, wait = await self._check(
                keys=[self.key, self.probe_key], args=[self.probe_lease_ms, self.token]
            )
        except RedisError as exc:
            self._warn(exc, "this replica's own circuit")
            self._fallback = True
            await self.local.before_call()
            return
        self._fallback = False
        self._seen_failures = int(failures)
        self._seen = _STATES[state]
        self._refusing = state in (b"open", b"half_open")
        if state == b"probe":
            self._probes += 1
        if state in (b"closed", b"probe"):
            return
        raise UpstreamError(
            ReasonCode.CIRCUIT_OPEN,
            f"{self.name} failed {self._seen_failures} times in a row (seen by any replica); calls to it "
            "are paused for a moment.",
            retry_after=max(1.0, float(wait)),
        )

    async def success(self) -> None:
        await self.local.success()
        # Healthy and nothing recorded: no write, so a working upstream costs one round trip per call.
        if not self._seen_failures and not self._probes:
            return
        self._probes = 0
        self._seen, self._seen_failures, self._refusing = CircuitState.CLOSED, 0, False
        try:
            await self._redis.delete(self.key, self.probe_key)
        except RedisError as exc:
            self._warn(exc, "the shared circuit keeps its failures until its key expires")

    async def failure(self) -> None:
        await self.local.failure()
        was_probe = self._probes > 0
        self._probes = 0
        try:
            failures, opened = await self._failure(
                keys=[self.key, self.probe_key],
                args=[self.local.failure_threshold, self.local.reset_after_s, int(was_probe), self.key_ttl_s],
            )
        except RedisError as exc:
            self._warn(exc, "this replica's own circuit")
            return
        self._seen_failures = int(failures)
        if opened:
            self._seen, self._refusing = CircuitState.OPEN, True

    async def release_probe(self) -> None:
        await self.local.release_probe()
        if not self._probes:
            return
        self._probes = 0
        try:
            await self._release(keys=[self.probe_key], args=[self.token])
        except RedisError as exc:
            self._warn(exc, "the probe lease runs out on its own")

"""One interface for a circuit breaker whose state lives in this process or in Redis (shared by replicas).

`Circuit` is what the gateway calls around every upstream call. `LocalCircuit` is the default: the plain
`CircuitBreaker` of this process. `RedisCircuit` keeps failures and open-until in Redis under a key per breaker
name, so one replica's open circuit protects the others too. In half-open state the one probe is a lease taken
with SET NX (PX = the longest a call may take), so across all replicas one caller probes; a replica that dies
mid-probe frees it when the lease runs out. On a Redis error it falls back to its own `CircuitBreaker`, which
sees every outcome of this replica's calls, so the protection degrades to per process rather than to none.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from ._circuit import CircuitBreaker, CircuitState
from ._errors import UpstreamError
from ._reason_codes import ReasonCode
from ._redis import (
    CIRCUIT_CHECK,
    CIRCUIT_FAILURE,
    KEY_PREFIX,
    RELEASE_IF_OWNER,
    Redis,
    RedisError,
    RedisOutageLog,
)


class Circuit(Protocol):
    name: str

    @property
    def state(self) -> CircuitState: ...

    @property
    def is_open(self) -> bool: ...

    async def before_call(self) -> None:
        """Raise UpstreamError(CIRCUIT_OPEN) unless a call may go through."""

    async def success(self) -> None: ...

    async def failure(self) -> None: ...

    async def release_probe(self) -> None:
        """A call that ended in neither success nor failure (its client went away)."""


class LocalCircuit:
    """The circuit of this process alone: `CircuitBreaker` behind the async interface."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.name = breaker.name

    @property
    def state(self) -> CircuitState:
        return self.breaker.state

    @property
    def is_open(self) -> bool:
        return self.breaker.is_open

    async def before_call(self) -> None:
        self.breaker.before_call()

    async def success(self) -> None:
        self.breaker.success()

    async def failure(self) -> None:
        self.breaker.failure()

    async def release_probe(self) -> None:
        self.breaker.release_probe()


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
            self.local.before_call()
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
        self.local.success()
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
        self.local.failure()
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
        self.local.release_probe()
        if not self._probes:
            return
        self._probes = 0
        try:
            await self._release(keys=[self.probe_key], args=[self.token])
        except RedisError as exc:
            self._warn(exc, "the probe lease runs out on its own")

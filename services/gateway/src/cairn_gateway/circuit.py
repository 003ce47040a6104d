"""A per-provider circuit breaker: closed → open after N consecutive failures → half-open probe → closed.

While open, calls fail at once with CIRCUIT_OPEN (and the service tries the fallback chain), which keeps a dead
model server from holding every request for a full timeout.
"""

from __future__ import annotations

import time
from enum import IntEnum

from cairn_core import CairnError, ReasonCode


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
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

    def before_call(self) -> None:
        """Raise CIRCUIT_OPEN unless a call may go through; in half-open state only one probe may."""
        state = self.state
        if state is CircuitState.CLOSED:
            return
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        wait = max(0.0, self.reset_after_s - (time.monotonic() - self._opened_at))
        raise CairnError(
            ReasonCode.CIRCUIT_OPEN,
            f"Provider {self.name!r} failed {self.failures} times in a row; calls are paused.",
            retry_after=max(1.0, wait),
        )

    def success(self) -> None:
        self.failures = 0
        self._probe_in_flight = False
        self._state = CircuitState.CLOSED

    def failure(self) -> None:
        self.failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self.failures >= self.failure_threshold:
            self._state = CircuitState.OPEN
            self._opened_at = time.monotonic()

    def release_probe(self) -> None:
        """A probe that ended neither in success nor failure (client went away) frees the slot."""
        self._probe_in_flight = False

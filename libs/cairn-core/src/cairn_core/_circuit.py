"""The circuit breaker of every hop: closed → open after N consecutive failures → half-open probe → closed.

While open, calls fail at once with CIRCUIT_OPEN (the gateway then tries its fallback chain, QS answers with
search results), which keeps a dead dependency from holding every request for a full timeout. In half-open
state exactly one call probes; the rest still fail fast until it succeeds.
"""

from __future__ import annotations

import time
from enum import IntEnum

from ._errors import UpstreamError
from ._reason_codes import ReasonCode


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
        raise UpstreamError(
            ReasonCode.CIRCUIT_OPEN,
            f"{self.name} failed {self.failures} times in a row; calls to it are paused for a moment.",
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

    @property
    def is_open(self) -> bool:
        """Calls are being refused (a half-open circuit whose probe is out counts as open)."""
        return self.state is CircuitState.OPEN or (
            self.state is CircuitState.HALF_OPEN and self._probe_in_flight
        )

    def release_probe(self) -> None:
        """A probe that ended neither in success nor failure (client went away) frees the slot."""
        self._probe_in_flight = False

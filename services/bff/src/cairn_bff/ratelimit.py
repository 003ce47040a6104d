"""A token bucket per client identity (API key fingerprint or client IP), held by the app, not the module.

In memory on purpose: one BFF process guards itself. With several replicas the limit is per replica; the
shared home for it is Redis (docs/architecture.md), not built yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`check(identity)` returns 0 when the request may pass, else the seconds until it could."""

    def __init__(self, per_minute: float, burst: int, max_identities: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_identities = max_identities
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, identity: str, now: float | None = None) -> float:
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= self.max_identities:
                self._prune(now)
            bucket = self._buckets[identity] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, identity: str, now: float | None = None) -> float:
        """What `check` would answer, without spending a token."""
        bucket = self._buckets.get(identity)
        if not self.enabled or bucket is None:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information: drop them to bound memory.
        full_after = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self.max_identities:  # still full (an attack): forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[
                : self.max_identities // 2
            ]:
                del self._buckets[key]

"""A token bucket per client identity (API key fingerprint or client IP), held by the app, not the module.

Two implementations of one interface (`Limiter`): `RateLimiter` in this process's memory (the default: one
BFF guards itself), and `RedisRateLimiter`, one bucket per identity in Redis shared by every BFF replica
(`CAIRN_REDIS_URL`), so N per minute means N across replicas rather than N per replica.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from cairn_core import KEY_PREFIX, TOKEN_BUCKET_LUA, Redis, RedisError, RedisOutageLog


class Limiter(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def check(self, identity: str) -> float:
        """Spend a token: 0 when the request may pass, else the seconds until it could."""

    async def wait(self, identity: str) -> float:
        """What `check` would answer, without spending a token."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """In memory. `now` is for tests: the bucket's clock, in `time.monotonic` seconds."""

    def __init__(self, per_minute: float, burst: int, max_identities: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_identities = max_identities
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def check(self, identity: str, now: float | None = None) -> float:
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

    async def wait(self, identity: str, now: float | None = None) -> float:
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


class RedisRateLimiter:
    """Key `cairn:bff:<name>:<identity>` (hash: tokens, updated), refilled and spent by one Lua script, so
    concurrent replicas can't both spend the last token. It expires once it would be full again.

    On a Redis error the request passes (fail open, with a throttled warning): a limit is worth less than
    availability, and the per-identity in-flight cap still bounds what one client can hold.
    """

    def __init__(self, redis: Redis, name: str, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.prefix = f"{KEY_PREFIX}bff:{name}:"
        self._script = redis.register_script(TOKEN_BUCKET_LUA)
        self._warn = RedisOutageLog(f"rate limit {name}")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def check(self, identity: str) -> float:
        return await self._run(identity, spend=True)

    async def wait(self, identity: str) -> float:
        return await self._run(identity, spend=False)

    async def _run(self, identity: str, *, spend: bool) -> float:
        if not self.enabled:
            return 0.0
        try:
            wait = await self._script(keys=[self.prefix + identity], args=[self.rate, self.burst, int(spend)])
        except RedisError as exc:
            self._warn(exc, "request let through")
            return 0.0
        return float(wait)

"""The dashboard's last hour: a sampler that scrapes the services every `BFF_DASHBOARD_SAMPLE_S` and a bounded
ring of the points it computes (series.py), in this process's memory or, with `CAIRN_REDIS_URL`, in Redis.

Each tick costs one GET of the gateway's /metrics and one per QS replica, and their parsing; nothing is
scraped when the page asks (`GET /api/dashboard/series` only reads the ring), so ten open dashboards cost
what one does.

With Redis every BFF replica shares one history: one list of points (`LPUSH` + `LTRIM`, newest first), and a
lease taken with `SET NX PX` for a little less than one interval, so that of N replicas one writes each point
rather than N. Every replica still scrapes each tick, so whichever takes the lease has a fresh previous
snapshot to subtract. A Redis error fails open, as everywhere in Cairn (cairn_core `_redis.py`): the point is
kept in this replica's own ring and the page is served from it until Redis answers again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Protocol, TypeVar

import httpx
import structlog
from cairn_core import KEY_PREFIX, Redis, RedisError, RedisOutageLog
from prometheus_client.samples import Sample

from . import dashboard as dash
from .proxy import Upstream
from .series import Point, Snapshot, gateway_snapshot, point

log = structlog.get_logger("dashboard")
T = TypeVar("T")

POINTS_KEY = f"{KEY_PREFIX}bff:dashboard:points"
LEASE_KEY = f"{KEY_PREFIX}bff:dashboard:lease"
# The lease is shorter than an interval, so the replica that holds it finds it free again at its next tick
# even when its timer runs a little early.
_LEASE_FRACTION = 0.8


class Ring(Protocol):
    async def append(self, point: Point) -> None: ...

    async def points(self) -> tuple[list[Point], str]:
        """Oldest first, and where they came from: "memory" or "redis"."""


class MemoryRing:
    def __init__(self, size: int) -> None:
        self._points: deque[Point] = deque(maxlen=size)

    async def append(self, point: Point) -> None:
        self._points.append(point)

    async def points(self) -> tuple[list[Point], str]:
        return list(self._points), "memory"


class RedisRing:
    """One Redis list shared by every replica, and this replica's own ring for when Redis does not answer."""

    def __init__(self, redis: Redis, size: int, sample_s: float) -> None:
        self.redis = redis
        self.size = size
        self.lease_ms = max(1, int(sample_s * 1000 * _LEASE_FRACTION))
        # Keys of a deployment that stopped go away once their history is over.
        self.ttl_s = max(1, int(size * sample_s))
        self.local = MemoryRing(size)
        self._warn = RedisOutageLog("dashboard history")

    async def append(self, point: Point) -> None:
        await self.local.append(point)
        try:
            if not await self.redis.set(LEASE_KEY, "1", nx=True, px=self.lease_ms):
                return  # another replica wrote this interval's point
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(POINTS_KEY, json.dumps(point, separators=(",", ":")))
                pipe.ltrim(POINTS_KEY, 0, self.size - 1)
                pipe.expire(POINTS_KEY, self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            self._warn(exc, "point kept in this replica's memory")

    async def points(self) -> tuple[list[Point], str]:
        try:
            raw = await self.redis.lrange(POINTS_KEY, 0, self.size - 1)
        except RedisError as exc:
            self._warn(exc, "history served from this replica's memory")
            return await self.local.points()
        return [json.loads(r) for r in reversed(raw)], "redis"


async def _scrape(client: httpx.AsyncClient, timeout_s: float) -> str:
    resp = await client.get("/metrics", timeout=timeout_s)
    resp.raise_for_status()
    return resp.text


class Sampler:
    """Scrapes, turns two snapshots into a point, appends it to the ring. `now` is for tests."""

    def __init__(
        self, gateway: Upstream, query: Upstream, ring: Ring, sample_s: float, timeout_s: float
    ) -> None:
        self.gateway = gateway
        self.query = query
        self.ring = ring
        self.sample_s = sample_s
        self.timeout_s = min(timeout_s, sample_s)
        self._last: Snapshot | None = None

    async def snapshot(self) -> Snapshot:
        at, mono = time.time(), time.monotonic()
        gw_clients, qs_clients = self.gateway.replicas.items, self.query.replicas.items
        texts = await asyncio.gather(
            *(_scrape(c, self.timeout_s) for c in [*gw_clients, *qs_clients]), return_exceptions=True
        )
        gw_texts, qs_texts = texts[: len(gw_clients)], texts[len(gw_clients) :]
        return Snapshot(
            at=at,
            mono=mono,
            gateway=_summed(gw_texts, lambda s: gateway_snapshot(dash.gateway_summary(s))),
            query_fallbacks=_summed(qs_texts, lambda s: dash.query_summary(s)["fallbacks_by_reason"]),
        )

    async def tick(self) -> Point | None:
        """One sample: the point for the interval since the last one (None on the first tick)."""
        now = await self.snapshot()
        before, self._last = self._last, now
        if before is None:
            return None
        p = point(before, now)
        await self.ring.append(p)
        return p

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # a bad scrape must not end the history; the next tick tries again
                log.exception("dashboard_sample_failed")
            await asyncio.sleep(max(0.0, self.sample_s - (time.monotonic() - started)))


def _summed(texts: list[str | BaseException], summarise: Callable[[list[Sample]], T]) -> T | None:
    """Every replica's samples together (counters add up); None unless each answered, since a replica missing
    from the sum would look like a counter reset."""
    if not all(isinstance(t, str) for t in texts):
        return None
    return summarise([s for t in texts if isinstance(t, str) for s in dash.parse(t)])


@asynccontextmanager
async def sampling(sampler: Sampler | None) -> AsyncIterator[None]:
    """Runs the sampler for as long as the app lives (from its lifespan)."""
    if sampler is None:
        yield
        return
    task = asyncio.create_task(sampler.run(), name="dashboard-sampler")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

"""How many costly requests (chat, search, upload) each identity has running now, against a limit.

Two implementations of one interface (`Concurrency`): `InFlight` in this process's memory (the default), and
`RedisInFlight`, shared by every BFF replica (`CAIRN_REDIS_URL`), so the limit holds across replicas. `enter`
hands back a ticket to give to `leave`, or None when the identity is at its limit.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

from cairn_core import INFLIGHT_ENTER_LUA, KEY_PREFIX, Redis, RedisError, RedisOutageLog


class Concurrency(Protocol):
    limit: int

    async def enter(self, identity: str) -> str | None: ...

    async def leave(self, identity: str, ticket: str) -> None: ...


class InFlight:
    """In memory; an identity is forgotten when its count drops to zero."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    async def enter(self, identity: str) -> str | None:
        n = self.counts.get(identity, 0)
        if self.limit and n >= self.limit:
            return None
        self.counts[identity] = n + 1
        return identity

    async def leave(self, identity: str, ticket: str) -> None:
        n = self.counts.get(identity, 1) - 1
        if n <= 0:
            self.counts.pop(identity, None)
        else:
            self.counts[identity] = n


class RedisInFlight:
    """Key `cairn:bff:inflight:<identity>`: a sorted set of this identity's running requests, each scored by
    when it expires (`ttl_s` after it started). The expiry is the safety net for a replica that crashed
    mid-request: its tickets stop counting after `ttl_s` instead of holding the client's slots forever.

    On a Redis error the request runs (fail open, with a throttled warning) and its ticket is empty, so
    `leave` does nothing for it.
    """

    def __init__(self, redis: Redis, limit: int, ttl_s: float) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        self.prefix = f"{KEY_PREFIX}bff:inflight:"
        self._redis = redis
        self._enter = redis.register_script(INFLIGHT_ENTER_LUA)
        self._warn = RedisOutageLog("in-flight limit")

    async def enter(self, identity: str) -> str | None:
        if not self.limit:
            return ""
        ticket = uuid.uuid4().hex
        try:
            admitted = await self._enter(keys=[self.prefix + identity], args=[self.limit, self.ttl_s, ticket])
        except RedisError as exc:
            self._warn(exc, "request let through")
            return ""
        return ticket if admitted else None

    async def leave(self, identity: str, ticket: str) -> None:
        if not ticket:
            return
        try:
            # Shielded: a request cancelled while it leaves still gives its slot back at once, not at the ttl.
            await asyncio.shield(self._redis.zrem(self.prefix + identity, ticket))
        except RedisError as exc:
            self._warn(exc, "the ticket expires on its own")

"""The answer cache: an in-process LRU with a TTL, or Redis shared by every QS replica.

Keyed on the normalised conversation, collection, filters, top_k, model, the corpus version and the collections
the asker may read (so an answer never crosses permission sets): any ingest or
delete bumps the version, so no answer outlives the documents it was built from. Only `ok` answers are stored.
`AnswerCache` (in process) is right for one QS; with `CAIRN_REDIS_URL` set, `RedisAnswerCache` holds the same
entries for all replicas, so an answer paid for once is a hit everywhere. Both implement `Cache`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from cairn_core import KEY_PREFIX, Redis, RedisError, RedisOutageLog, json_dumps, json_loads


class Cache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any]) -> None: ...


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def cache_key(
    conversation: Sequence[tuple[str, str]],
    collection: str | None,
    filters: dict[str, Any],
    top_k: int,
    model: str | None,
    corpus_version: int,
    readable: str,
) -> str:
    """`readable`: the asker's permission set (governance/access.py `Access.scope_key`)."""
    payload = json.dumps(
        [[r, normalise(c)] for r, c in conversation]
        + [collection, filters, top_k, model, corpus_version, readable],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def get(self, key: str) -> dict[str, Any] | None:
        item = self._items.get(key)
        if item is None:
            return None
        stored, value = item
        if time.monotonic() - stored > self.ttl_s:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    async def put(self, key: str, value: dict[str, Any]) -> None:
        if self.size <= 0:
            return
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class RedisAnswerCache:
    """Key `cairn:qs:answer:<cache_key>`, a JSON value with the TTL as its Redis expiry. No size bound of its
    own: Redis's `maxmemory` with an LRU policy is the operator's bound (docs/operations.md).

    A Redis error is a miss (get) or a skipped store (put), with a throttled warning: the answer is still
    computed and served, only not shared.
    """

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.prefix = f"{KEY_PREFIX}qs:answer:"
        self._redis = redis
        self._warn = RedisOutageLog("answer cache")

    async def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(self.prefix + key)
        except RedisError as exc:
            self._warn(exc, "cache miss")
            return None
        if raw is None:
            return None
        value = json_loads(raw)
        return value if isinstance(value, dict) else None

    async def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._redis.set(self.prefix + key, json_dumps(value), px=self.ttl_ms)
        except RedisError as exc:
            self._warn(exc, "answer not cached")

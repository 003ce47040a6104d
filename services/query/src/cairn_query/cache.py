"""The answer cache: an in-process LRU with a TTL.

Keyed on the normalised conversation, collection, filters, top_k, model and the corpus version: any ingest or
delete bumps the version, so no answer outlives the documents it was built from. Only `ok` answers are stored.
In-process is right for one QS; replicas would move it to Redis (docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def cache_key(
    conversation: Sequence[tuple[str, str]],
    collection: str | None,
    filters: dict[str, Any],
    top_k: int,
    model: str | None,
    corpus_version: int,
) -> str:
    payload = json.dumps(
        [[r, normalise(c)] for r, c in conversation] + [collection, filters, top_k, model, corpus_version],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class AnswerCache:
    def __init__(self, size: int, ttl_s: float) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        item = self._items.get(key)
        if item is None:
            return None
        stored, value = item
        if time.monotonic() - stored > self.ttl_s:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.size <= 0:
            return
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

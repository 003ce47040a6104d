"""Several replicas of one service behind one caller: which to try first, and in what order after it.

Each call starts at the next replica in turn (round robin), so the load spreads with no coordination between
callers. A replica that could not be reached goes to the back of the order for `cooldown_s`: the next calls
do not each pay a refused connection (or, for a host that is gone, a whole connect timeout) to learn it again.
It is still tried last, so a caller whose every replica looks down still tries them all.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def split_urls(many: str, one: str) -> list[str]:
    """`X_URLS` (comma-separated) when set, else the single `X_URL`: both settings keep working."""
    urls = [u.strip().rstrip("/") for u in many.split(",") if u.strip()]
    return urls or [one.strip().rstrip("/")]


class Replicas(Generic[T]):
    def __init__(self, items: Sequence[T], cooldown_s: float = 5.0) -> None:
        if not items:
            raise ValueError("at least one replica is needed")
        self.items = list(items)
        self.cooldown_s = cooldown_s
        self._down_until: dict[int, float] = {}
        self._turn = itertools.count()

    def order(self) -> list[T]:
        """Every replica, the next in turn first, those recently unreachable last."""
        n = len(self.items)
        start = next(self._turn) % n
        now = time.monotonic()
        indices = [(start + i) % n for i in range(n)]
        # sorted() is stable: within "up" and within "down" the round-robin order stays.
        indices.sort(key=lambda i: self._down_until.get(i, 0.0) > now)
        return [self.items[i] for i in indices]

    def unreachable(self, item: T) -> None:
        self._down_until[self._index(item)] = time.monotonic() + self.cooldown_s

    def reachable(self, item: T) -> None:
        self._down_until.pop(self._index(item), None)

    def _index(self, item: T) -> int:
        return next(i for i, x in enumerate(self.items) if x is item)

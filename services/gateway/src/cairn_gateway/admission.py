"""Admission control: a fixed number of concurrent generations per model and a bounded wait queue.

When every slot is busy and the queue is full, a request fails at once with QUEUE_FULL (HTTP 429 with
Retry-After) instead of piling up; callers such as the query service degrade on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cairn_core import CairnError, ReasonCode


class Admission:
    def __init__(self, max_concurrency: int, queue_size: int, retry_after_s: float = 1.0) -> None:
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self.in_flight = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self.waiting >= self.queue_size:
            raise CairnError(
                ReasonCode.QUEUE_FULL,
                f"All {self.max_concurrency} generation slots are busy and the queue of {self.queue_size} is "
                "full; retry shortly.",
                retry_after=self.retry_after_s,
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

"""Stream items from a blocking producer running in a worker thread to the event loop, as they come.

In-process models generate in C code that holds a core for the whole answer, so it must run off the event loop.
The producer gets `emit(item)` and a `threading.Event` that is set as soon as the consumer goes away (the async
generator is closed or cancelled: client disconnect, timeout); it checks that event once per token, so an
abandoned generation stops within a token instead of burning the CPU to `max_tokens`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")

Producer = Callable[[Callable[[T], None], threading.Event], None]

_ITEM, _ERROR, _END = 0, 1, 2


async def stream_in_thread(executor: Executor, produce: Producer[T]) -> AsyncIterator[T]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    cancel = threading.Event()

    def post(kind: int, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening any more
            cancel.set()

    def emit(item: T) -> None:
        if not cancel.is_set():
            post(_ITEM, item)

    def run() -> None:
        try:
            produce(emit, cancel)
        except BaseException as exc:  # handed to the consumer, which re-raises it on the loop
            post(_ERROR, exc)
        else:
            post(_END, None)

    # The thread's future is deliberately not awaited on cancellation: `cancel` makes it finish within a
    # token, and the producer releases its own resources (the model instance) when it does.
    loop.run_in_executor(executor, run)
    try:
        while True:
            kind, value = await queue.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        cancel.set()

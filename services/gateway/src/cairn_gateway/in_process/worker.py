"""The gateway's side of one model worker process (worker_main.py): start it, multiplex requests over its
pipes, and notice when it dies.

A worker that dies (a signal from native code, an exit) ends every request it held with MODEL_CRASHED: a
stream that had started ends with `error` + `done` as any broken stream does, one that had not walks the
fallback chain. Restarting is the owner's decision (providers/isolated.py), made once, with backoff.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import structlog
from cairn_core import CairnError, ReasonCode, describe_exit

from ..errors import ProviderError
from ..providers.base import ProviderChunk, ProviderRequest
from .worker_protocol import chunk_from_wire, dumps, request_to_wire

log = structlog.get_logger("model_worker")

# One line may hold a whole non-streamed extractive answer or the engine's info: far below this.
_LINE_LIMIT = 16 * 1024 * 1024
_CHUNK, _END, _ERROR = 0, 1, 2


class WorkerDied(CairnError):
    """The worker process ended while loading or serving; `by_signal` when a signal (SIGSEGV, SIGKILL) ended it."""

    def __init__(self, message: str, *, returncode: int | None) -> None:
        super().__init__(ReasonCode.MODEL_CRASHED, message, status_code=502)
        self.returncode = returncode
        self.by_signal = returncode is not None and returncode < 0


class ModelWorker:
    """One worker process. `on_exit(worker)` is called once when it ends without having been closed."""

    def __init__(self, proc: asyncio.subprocess.Process, on_exit: Callable[[ModelWorker], None]) -> None:
        self.proc = proc
        self.on_exit = on_exit
        self.info: dict[str, Any] = {}
        self.started_at = time.monotonic()
        self.exit: str | None = None  # how it ended, once it has
        self._closing = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[tuple[int, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.exit is None and not self._closing

    @classmethod
    async def start(
        cls, init: dict[str, Any], on_exit: Callable[[ModelWorker], None], timeout_s: float
    ) -> ModelWorker:
        """Spawn, send `init`, wait for `ready`. Raises the load's own CairnError, or WorkerDied."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cairn_gateway.in_process.worker_main",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        worker = cls(proc, on_exit)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(dumps({"op": "init", **init}))
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
        except TimeoutError:
            await worker.aclose()
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE, f"The model worker did not load within {timeout_s:.0f} s."
            ) from None
        except asyncio.CancelledError:  # the gateway is shutting down mid-load: leave no process behind
            proc.kill()
            await proc.wait()
            raise
        if not line:
            returncode = await proc.wait()
            raise WorkerDied(
                f"The model process died while loading ({describe_exit(returncode)}).", returncode=returncode
            )
        first = json.loads(line)
        if first.get("op") != "ready":
            await proc.wait()
            code = ReasonCode(first.get("reason_code", "PROVIDER_UNAVAILABLE"))
            raise CairnError(code, first.get("message", "The model failed to load."))
        worker.info = first.get("info") or {}
        worker._reader = asyncio.create_task(worker._read())
        return worker

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if msg.get("info"):
                self.info = msg["info"]
            queue = self._pending.get(msg.get("id", -1))
            if queue is None:
                continue  # a request already given up on (cancelled): its last words are not needed
            if "chunk" in msg:
                queue.put_nowait((_CHUNK, chunk_from_wire(msg["chunk"])))
            elif "error" in msg:
                err = msg["error"]
                queue.put_nowait((_ERROR, ProviderError(ReasonCode(err["reason_code"]), err["message"])))
            else:
                queue.put_nowait((_END, None))
        self.exit = describe_exit(await self.proc.wait())
        if self._closing:
            return
        died = WorkerDied(
            f"The model process crashed ({self.exit}) during this answer; it is being restarted.",
            returncode=self.proc.returncode,
        )
        for queue in self._pending.values():
            queue.put_nowait((_ERROR, died))
        log.error("model_worker_died", pid=self.pid, exit=self.exit, requests_lost=len(self._pending))
        self.on_exit(self)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        if self.alive and not self.proc.stdin.is_closing():
            self.proc.stdin.write(dumps(message))

    async def stream(self, req: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        if not self.alive:
            raise ProviderError(ReasonCode.MODEL_CRASHED, "The model process is not running.")
        rid = next(self._ids)
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._pending[rid] = queue
        self._send({"op": "generate", "id": rid, "req": request_to_wire(req)})
        finished = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == _CHUNK:
                    yield value
                    continue
                finished = True
                if kind == _ERROR:
                    raise value
                return
        finally:
            self._pending.pop(rid, None)
            if not finished:  # the caller went away or timed out: the worker stops within a token
                self._send({"op": "cancel", "id": rid})

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Close the pipe (the worker finishes, cancels what runs and exits), then make sure it is gone."""
        self._closing = True
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

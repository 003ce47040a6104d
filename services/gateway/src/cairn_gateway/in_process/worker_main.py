"""The model worker: a child process of the gateway that holds one in-process model and generates with it.

`python -m cairn_gateway.in_process.worker_main`, started by `in_process/worker.py` only. Native code that
crashes (a segfault in a CPU kernel, an abort in a GGML assert) takes this process down, never the gateway:
the gateway ends the requests it had here with MODEL_CRASHED and starts a new worker.

The engine is any `ThreadedProvider` whose class offers `load_resolved(path, extra_bufts)` and `probe()`
(the llamacpp provider): the file checks (manifest, sha256, memory) are the gateway's, done before this
process starts, so a refused file never costs a process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any, BinaryIO

from cairn_core import CairnError, ReasonCode

from ..providers.catalogue import import_from_string
from ..settings import GatewaySettings, ModelSpec
from .worker_protocol import chunk_to_wire, dumps, request_from_wire

REPORT_S = 0.1


class _Worker:
    def __init__(self, out: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self.out = out
        self.loop = loop
        self.engine: Any = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.last_info: dict[str, Any] = {}

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(dumps(message))
        self.out.flush()

    def info(self) -> dict[str, Any]:
        return dict(self.engine.info()) if self.engine is not None else {}

    def send_info(self) -> None:
        info = self.info()
        if info != self.last_info:
            self.last_info = info
            self.send({"op": "info", "info": info})

    async def report(self) -> None:
        """The engine's counters change in its threads (a cancelled generation finishes a token later): the
        gateway gets them within REPORT_S, so /v1/models is never more than that behind."""
        while True:
            await asyncio.sleep(REPORT_S)
            self.send_info()

    async def init(self, msg: dict[str, Any]) -> bool:
        settings = GatewaySettings.model_validate(msg["settings"])
        spec = ModelSpec.model_validate(msg["spec"])
        try:
            self.engine = import_from_string(msg["engine"])(spec, settings)
            await asyncio.to_thread(self.engine.load_resolved, msg["path"], bool(msg["extra_bufts"]))
            if msg.get("probe"):
                await asyncio.to_thread(self.engine.probe)
        except CairnError as exc:
            self.send({"op": "load_failed", "reason_code": exc.reason_code.value, "message": exc.message})
            return False
        except Exception as exc:  # anything else a load can raise is still the model's failure to load
            self.send({"op": "load_failed", "reason_code": "PROVIDER_UNAVAILABLE", "message": repr(exc)})
            return False
        self.send({"op": "ready", "info": self.info()})
        return True

    async def generate(self, rid: int, wire: dict[str, Any]) -> None:
        first = True
        try:
            async for chunk in self.engine.stream(request_from_wire(wire)):
                self.send({"id": rid, "chunk": chunk_to_wire(chunk)})
                if first:  # the engine counts this generation now: the gateway's view should too
                    first = False
                    self.send_info()
        except asyncio.CancelledError:
            self.send({"id": rid, "end": True, "info": self.info()})
            raise
        except CairnError as exc:
            error = {"reason_code": exc.reason_code.value, "message": exc.message}
            self.send({"id": rid, "error": error, "info": self.info()})
        except Exception as exc:
            error = {"reason_code": ReasonCode.PROVIDER_ERROR.value, "message": f"The model failed: {exc!r}"}
            self.send({"id": rid, "error": error, "info": self.info()})
        else:
            self.send({"id": rid, "end": True, "info": self.info()})
        finally:
            self.tasks.pop(rid, None)

    def handle(self, msg: dict[str, Any]) -> None:
        op, rid = msg.get("op"), msg.get("id")
        if op == "generate" and isinstance(rid, int):
            self.tasks[rid] = self.loop.create_task(self.generate(rid, msg["req"]))
        elif op == "cancel" and rid in self.tasks:
            self.tasks[rid].cancel()


def _read_lines(loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[bytes]) -> None:
    """A thread: the gateway's messages, line by line; b"" when the gateway closed the pipe (or died)."""
    for line in sys.stdin.buffer:
        loop.call_soon_threadsafe(inbox.put_nowait, line)
    loop.call_soon_threadsafe(inbox.put_nowait, b"")


async def _main(out: BinaryIO) -> int:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    threading.Thread(target=_read_lines, args=(loop, inbox), daemon=True).start()
    worker = _Worker(out, loop)
    first = await inbox.get()
    if not first or not await worker.init(json.loads(first)):
        return 1
    reporter = loop.create_task(worker.report())
    while line := await inbox.get():
        worker.handle(json.loads(line))
    for task in list(worker.tasks.values()):  # the gateway is gone: stop what runs, within a token
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    reporter.cancel()
    await worker.engine.aclose()
    return 0


def main() -> None:
    # The protocol gets its own copy of fd 1; fd 1 itself then points at stderr (the gateway's log), so a
    # print from native code lands in the log instead of in the middle of a message.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.exit(asyncio.run(_main(out)))


if __name__ == "__main__":
    main()

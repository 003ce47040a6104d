"""An in-process engine for the worker tests: no model, tokens on a clock, and a probe that can crash.

The gateway loads it by import path (`LLM_PROVIDER=scripted_engine:ScriptedEngine`, with this folder on the
gateway's PYTHONPATH), so the worker process, its crashes and the gateway's recovery are the real ones; only
the native library is replaced by a loop. `params` (ModelSpec.params, or LLM_SCRIPTED_* in the environment)
say what to do:
- LLM_SCRIPTED_PROBE_CRASH=extra_bufts: the probe kills the worker with SIGSEGV when loaded with llama.cpp's
  extra buffer types, as ggml's AMX kernels do on a CPU whose hypervisor does not allow them;
  =always: with any settings.
- LLM_SCRIPTED_TOKEN_MS: milliseconds between tokens (default 20).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cairn_core import StopReason, Usage
from cairn_gateway.providers.base import ProviderChunk, ProviderRequest, ThreadedProvider
from cairn_gateway.settings import GatewaySettings, ModelSpec


class ScriptedEngine(ThreadedProvider):
    name = "scripted"
    isolable = True

    def __init__(self, spec: ModelSpec, settings: GatewaySettings, http: Any = None) -> None:
        self.spec = spec
        self.settings = settings
        self.model = "scripted"
        self.manifest = None
        self._executor: ThreadPoolExecutor | None = None
        self.extra_bufts: bool | None = None
        self.token_s = float(os.environ.get("LLM_SCRIPTED_TOKEN_MS", "20")) / 1000
        self.crash = os.environ.get("LLM_SCRIPTED_PROBE_CRASH", "")

    def prepare(self) -> Path:
        return Path(__file__)

    def load_resolved(self, path: str, extra_bufts: bool = True) -> None:
        self.extra_bufts = extra_bufts
        self._executor = ThreadPoolExecutor(max_workers=4)

    def probe(self) -> None:
        if self.crash == "always" or (self.crash == "extra_bufts" and self.extra_bufts):
            os.kill(os.getpid(), signal.SIGSEGV)

    async def start(self) -> None:
        self.load_resolved(str(self.prepare()), True)

    async def health(self) -> bool:
        return self._executor is not None

    def info(self) -> dict[str, Any]:
        return {"state": "loaded", "memory_mb": 1.0, "pid": os.getpid(), "extra_bufts": self.extra_bufts}

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(
        self, req: ProviderRequest, emit: Callable[[ProviderChunk], None], cancel: threading.Event
    ) -> None:
        for i in range(req.max_tokens):
            if cancel.is_set():
                return
            time.sleep(self.token_s)
            emit(ProviderChunk(text=f"t{i} "))
        emit(ProviderChunk(finish_reason=StopReason.LENGTH, usage=Usage(completion_tokens=req.max_tokens)))

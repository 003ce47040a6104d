"""An in-process provider run in a worker process that the gateway owns, restarted when it dies.

Ollama runs each model in a runner subprocess and vLLM keeps its engine in another process, for the same
reason: native code that faults (a CPU kernel the hypervisor does not allow, an assert in GGML) must end a
request, not the server. Here:

- The file checks (manifest, sha256, memory guard) run in the gateway (`engine.prepare()`), so a refused file
  never costs a process; the worker only loads, probes and generates (in_process/worker_main.py).
- The first load probes the model with a short generation. When the worker dies on a signal while loading or
  probing with llama.cpp's extra buffer types (the AMX and repacked-weights kernels), it is loaded again
  without them: slower prompt processing, but answers (docs/models.md, "CPUs that advertise AMX"). The
  finding is kept in the model cache, keyed by the llama.cpp build, so the next start goes straight to it.
  `LLM_EXTRA_BUFTS=on|off` forces either.
- A worker that dies while serving ends its requests with MODEL_CRASHED and is started again after
  0.5 s, 1 s, 2 s … up to LLM_WORKER_RESTART_MAX_S (the doubling resets once a worker has lived a minute);
  meanwhile requests get PROVIDER_UNAVAILABLE, so the fallback chain answers. Crashes and restarts are
  counted in /metrics and shown in /v1/models, /readyz and the dashboard.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import structlog
from cairn_core import CairnError, ReasonCode

from ..errors import ProviderError
from ..in_process.worker import ModelWorker, WorkerDied
from ..metrics import GatewayMetrics
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ProviderResult, collect

log = structlog.get_logger("isolated")

# Settings the worker does not need, kept out of its init message (the pipe is private, but a secret that
# never travels needs no care).
_SECRETS = {"api_key", "admin_token", "internal_token", "master_key", "redis_url"}
_STABLE_S = 60.0  # a worker that lived this long resets the restart backoff
_LOAD_TIMEOUT_S = 300.0


class IsolatedProvider:
    """The gateway-side face of `engine_cls` (a ThreadedProvider with prepare/load_resolved/probe)."""

    def __init__(
        self, engine_cls: Any, spec: ModelSpec, settings: GatewaySettings, metrics: GatewayMetrics
    ) -> None:
        self.engine = engine_cls(spec, settings)  # only its file checks and names run in the gateway
        self.engine_ref = f"{engine_cls.__module__}:{engine_cls.__qualname__}"
        self.name: str = self.engine.name
        self.model: str = spec.model or ""  # the file's name once `prepare()` found it
        self.spec = spec
        self.settings = settings
        self.metrics = metrics
        self.path: Path | None = None
        self.extra_bufts: bool | None = None  # as the running worker was loaded
        self.safe_reason: str | None = None  # why extra buffer types are off, when the probe decided it
        self.worker: ModelWorker | None = None
        self.crashes = 0
        self.restarts = 0
        self.last_crash: str | None = None
        self._failures_in_row = 0
        self._restart: asyncio.Task[None] | None = None
        self._restart_at = 0.0

    # --- what the registry reads ------------------------------------------------------------------------

    @property
    def manifest(self) -> Any:
        return self.engine.manifest

    async def health(self) -> bool:
        return self.worker is not None and self.worker.alive

    def not_ready_reason(self) -> str | None:
        if self.worker is not None and self.worker.alive:
            return None
        wait = max(0.0, self._restart_at - time.monotonic())
        return f"The model process crashed ({self.last_crash}); it restarts in {wait:.0f} s."

    def info(self) -> dict[str, Any]:
        worker = self.worker
        up = worker is not None and worker.alive
        return {
            **(worker.info if worker is not None else {}),
            "state": "loaded" if up else "restarting",
            "isolation": "worker",
            "worker_pid": worker.pid if up and worker is not None else None,
            "worker_crashes": self.crashes,
            "worker_restarts": self.restarts,
            "last_crash": self.last_crash,
            "extra_bufts": self.extra_bufts,
            "notice": self.safe_reason,
        }

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.path = await asyncio.to_thread(self.engine.prepare)
        self.model = str(self.engine.model)
        self.worker = await self._spawn()

    async def _spawn(self) -> ModelWorker:
        forced = self.settings.extra_bufts
        extra = forced == "on" or (forced == "auto" and not self._known_unsafe())
        try:
            worker = await self._start_worker(extra)
        except WorkerDied as died:
            if not (died.by_signal and extra and forced == "auto"):
                self._count_crash("load", died)
                raise
            self._count_crash("probe", died)
            self.safe_reason = (
                f"llama.cpp's extra buffer types (AMX, repacked weights) crashed this CPU ({died.message}); "
                "the model runs without them (LLM_EXTRA_BUFTS=on forces them)."
            )
            log.warning("model_probe_crashed", alias=self.spec.alias, exit=died.message, action="safe_load")
            worker = await self._start_worker(False)
            self._remember_unsafe()
        if not extra and forced == "auto" and self.safe_reason is None:
            self.safe_reason = (
                "llama.cpp's extra buffer types crashed this CPU before (the model cache's cpu-probe.json); "
                "the model runs without them."
            )
        return worker

    async def _start_worker(self, extra_bufts: bool) -> ModelWorker:
        self.extra_bufts = extra_bufts
        init = {
            "engine": self.engine_ref,
            "spec": self.spec.model_dump(mode="json"),
            "settings": self.settings.model_dump(mode="json", exclude=_SECRETS),
            "path": str(self.path),
            "extra_bufts": extra_bufts,
            "probe": True,
        }
        return await ModelWorker.start(init, self._on_exit, _LOAD_TIMEOUT_S)

    def _count_crash(self, phase: str, died: WorkerDied) -> None:
        self.crashes += 1
        self.last_crash = died.message
        self.metrics.model_crashes.labels(self.spec.alias, phase).inc()

    def _on_exit(self, worker: ModelWorker) -> None:
        """A serving worker died: count it, and start a new one after the backoff."""
        if worker is not self.worker:
            return
        self.crashes += 1
        self.last_crash = worker.exit
        self.metrics.model_crashes.labels(self.spec.alias, "serving").inc()
        lived = time.monotonic() - worker.started_at
        self._failures_in_row = 0 if lived >= _STABLE_S else self._failures_in_row + 1
        delay = min(self.settings.worker_restart_max_s, 0.5 * 2**self._failures_in_row)
        self._restart_at = time.monotonic() + delay
        self._restart = asyncio.get_running_loop().create_task(self._restart_after(delay))

    async def _restart_after(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                self.worker = await self._spawn()
            except CairnError as exc:
                delay = min(self.settings.worker_restart_max_s, delay * 2)
                self._restart_at = time.monotonic() + delay
                log.error(
                    "model_worker_restart_failed", alias=self.spec.alias, error=exc.message, retry_s=delay
                )
                continue
            self.restarts += 1
            self.metrics.model_restarts.labels(self.spec.alias).inc()
            log.info("model_worker_restarted", alias=self.spec.alias, pid=self.worker.pid, after_s=delay)
            return

    async def aclose(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        if self.worker is not None:
            await self.worker.aclose()

    # --- generation ------------------------------------------------------------------------------------

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        worker = self.worker
        if worker is None or not worker.alive:
            raise ProviderError(ReasonCode.PROVIDER_UNAVAILABLE, self.not_ready_reason() or "Not loaded.")
        # aclosing: when the caller stops early (timeout, disconnect) the worker hears `cancel` now, not when the
        # inner generator is garbage-collected.
        async with aclosing(worker.stream(req)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        return await collect(self.stream(req))

    # --- what the probe found, kept per llama.cpp build ---------------------------------------------------

    def _probe_file(self) -> Path:
        root = Path(self.settings.model_cache_dir or Path.home() / ".cache" / "cairn" / "models")
        return root / "cpu-probe.json"

    @staticmethod
    def _build_key() -> str:
        """The installed llama.cpp build: a rebuilt or reinstalled wheel is probed again."""
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or spec.origin is None:
            return ""
        return str(Path(spec.origin).stat().st_mtime_ns)

    def _known_unsafe(self) -> bool:
        try:
            data = json.loads(self._probe_file().read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("unsafe_build") == self._build_key() != ""

    def _remember_unsafe(self) -> None:
        try:
            path = self._probe_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"unsafe_build": self._build_key(), "why": self.last_crash}))
        except OSError as exc:  # the finding still holds for this process; the next start probes again
            log.warning("cpu_probe_not_saved", error=str(exc))

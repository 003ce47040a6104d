"""The model registry: declared models, their providers, admission slots and circuit breakers.

Models come from settings (the default `LLM_PROVIDER`/`LLM_MODEL` plus `LLM_MODELS`); a request's `model`
picks one by alias. The admin endpoints load, unload and switch the default without a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from cairn_core import CairnError, Circuit, CircuitBreaker, ReasonCode, Redis, RedisCircuit

from .admission import Admission
from .errors import ModelNotLoaded
from .in_process import ModelManifest, declared_manifest
from .in_process.build import build_stamp
from .metrics import GatewayMetrics
from .providers.base import Embedder, Provider
from .providers.catalogue import EMBEDDERS, provider_class
from .providers.isolated import IsolatedProvider
from .settings import GatewaySettings, ModelSpec

log = structlog.get_logger("registry")


@dataclass(eq=False)
class ModelEntry:
    spec: ModelSpec
    admission: Admission
    breaker: Circuit
    provider: Provider | None = None
    error: str | None = None
    reason_code: ReasonCode | None = None  # of the last failed load
    # The model's manifest (in_process/manifest.py): known before the load for shipped models, written or checked
    # by the load for a user's GGUF; None for models another process serves.
    manifest: ModelManifest | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def alias(self) -> str:
        return self.spec.alias

    @property
    def loaded(self) -> bool:
        return self.provider is not None

    def not_loaded(self) -> ModelNotLoaded:
        code = self.reason_code or ReasonCode.PROVIDER_UNAVAILABLE
        why = f": {self.error}" if self.error else "."
        return ModelNotLoaded(code, f"Model {self.alias!r} is not loaded{why}", status_code=503)

    def provider_info(self) -> dict[str, Any]:
        """What the loaded provider says of itself (`info()`: state, memory, slots, deployments…); {} if nothing."""
        info = getattr(self.provider, "info", None)
        return info() if info is not None else {}

    def info(self) -> dict[str, Any]:
        extra = self.provider_info()
        return {
            "id": self.alias,
            "object": "model",
            "owned_by": "cairn",
            "provider": self.spec.provider,
            "upstream_model": getattr(self.provider, "model", self.spec.model) or None,
            "state": extra.get("state", "loaded") if self.loaded else "not_loaded",
            "memory_mb": extra.get("memory_mb", 0),
            "circuit": self.breaker.state.name.lower(),
            "error": self.error,
            "reason_code": self.reason_code.value if self.error and self.reason_code else None,
            "manifest": self.manifest.listing() if self.manifest is not None else None,
            # Provider details (path, slots, token counters of in-process models) follow the common fields.
            **{k: v for k, v in extra.items() if k not in ("state", "memory_mb")},
        }


class ModelRegistry:
    def __init__(
        self,
        settings: GatewaySettings,
        http: aiohttp.ClientSession,
        metrics: GatewayMetrics,
        redis: Redis | None = None,
    ) -> None:
        """`redis`: the lifespan's client when CAIRN_REDIS_URL is set; circuits are then shared by replicas."""
        self.settings = settings
        self.http = http
        self.metrics = metrics
        self.redis = redis
        self.entries: dict[str, ModelEntry] = {}
        self.fallbacks: list[ModelEntry] = []
        self.default_alias = settings.model_specs[0].alias
        self.embedder: Embedder | None = None

    def _entry(self, spec: ModelSpec) -> ModelEntry:
        s = self.settings
        return ModelEntry(
            spec=spec,
            admission=Admission(
                int(spec.params.get("max_concurrency", s.max_concurrency)),
                int(spec.params.get("queue_size", s.queue_size)),
            ),
            breaker=self._circuit(spec),
            manifest=declared_manifest(spec.provider, spec.path, s.model_cache_dir),
        )

    def _circuit(self, spec: ModelSpec) -> Circuit:
        s = self.settings
        breaker = CircuitBreaker(f"Model {spec.alias!r}", s.circuit_failures, s.circuit_reset_ms / 1000)
        if self.redis is None:
            return breaker
        # The probe's lease lasts as long as a generation may: no second replica probes while it runs.
        return RedisCircuit(self.redis, breaker, probe_lease_s=s.timeout_ms / 1000)

    async def start(self) -> None:
        """Load what is declared. A model that fails to load does not stop the gateway: it starts degraded,
        requests walk the fallback chain, `/readyz` says why, and `retry_failed` tries the model again."""
        for spec in self.settings.model_specs:
            self.entries[spec.alias] = self._entry(spec)
            if spec.load:
                await self._try_load(self.entries[spec.alias])
        for name in self.settings.fallback_list:
            entry = self._entry(ModelSpec(alias=f"fallback:{name}", provider=name))
            await self._load_entry(entry)
            self.fallbacks.append(entry)
        self.embedder = await self._load_embedder()

    async def _try_load(self, entry: ModelEntry) -> bool:
        try:
            await self._load_entry(entry)
        except Exception as exc:
            err = (
                exc if isinstance(exc, CairnError) else CairnError(ReasonCode.PROVIDER_UNAVAILABLE, repr(exc))
            )
            entry.error, entry.reason_code = err.message, err.reason_code
            log.error("model_load_failed", alias=entry.alias, reason_code=err.reason_code, error=err.message)
            return False
        return True

    @property
    def degraded(self) -> list[ModelEntry]:
        """Declared models that should be loaded and are not."""
        return [e for e in self.entries.values() if e.spec.load and e.provider is None and e.error]

    async def retry_failed(self, every_s: float, cap_s: float = 300.0) -> None:
        """Runs for the gateway's life: loads models whose load failed as soon as they can be loaded, with no
        restart by hand. Each failure doubles the wait (a wrong file stays wrong; its checksum costs CPU),
        but a change of the build status file (setup.sh finished compiling llama.cpp) retries at once."""
        waits: dict[str, float] = {}
        due: dict[str, float] = {}
        seen = build_stamp(self.settings.build_status_path)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s)
            stamp = build_stamp(self.settings.build_status_path)
            changed, seen = stamp != seen, stamp
            for entry in self.degraded:
                if not changed and loop.time() < due.get(entry.alias, 0.0):
                    continue
                if await self._try_load(entry):
                    log.info("model_recovered", alias=entry.alias)
                    waits.pop(entry.alias, None)
                    continue
                waits[entry.alias] = min(cap_s, waits.get(entry.alias, every_s / 2) * 2)
                due[entry.alias] = loop.time() + waits[entry.alias]

    async def _load_embedder(self) -> Embedder | None:
        name = self.settings.embed_provider
        if name in ("", "none", "off"):
            return None
        cls = provider_class(name, EMBEDDERS)
        embedder = cls(self.settings)
        if hasattr(embedder, "start"):
            await embedder.start()
        log.info("embedder_loaded", provider=name, model=embedder.model)
        return embedder

    async def _load_entry(self, entry: ModelEntry) -> None:
        async with entry.lock:
            if entry.provider is not None:
                return
            cls = provider_class(entry.spec.provider)
            provider: Provider
            if getattr(cls, "isolable", False) and self.settings.model_isolation == "worker":
                provider = IsolatedProvider(cls, entry.spec, self.settings, self.metrics)
            else:
                provider = cls(entry.spec, self.settings, self.http)
            try:
                await provider.start()
            except CairnError as exc:
                entry.error, entry.reason_code = exc.message, exc.reason_code
                raise
            finally:
                # A user's GGUF has its manifest once the load has hashed it, even if llama.cpp then failed.
                entry.manifest = getattr(provider, "manifest", None) or entry.manifest
            share = getattr(provider, "share_circuits", None)
            if self.redis is not None and share is not None:  # the router's per-upstream breakers
                share(self.redis, self.settings.timeout_ms / 1000)
            entry.provider, entry.error, entry.reason_code = provider, None, None
            log.info("model_loaded", alias=entry.alias, provider=entry.spec.provider)

    async def load(self, alias: str) -> ModelEntry:
        entry = self.get(alias)
        await self._load_entry(entry)
        return entry

    async def unload(self, alias: str) -> ModelEntry:
        entry = self.get(alias)
        async with entry.lock:
            provider, entry.provider = entry.provider, None
        if provider is not None:
            await provider.aclose()
            log.info("model_unloaded", alias=alias)
        return entry

    def set_default(self, alias: str) -> ModelEntry:
        entry = self.get(alias)
        self.default_alias = alias
        return entry

    def get(self, alias: str) -> ModelEntry:
        entry = self.entries.get(alias)
        if entry is None:
            raise CairnError(
                ReasonCode.MODEL_NOT_FOUND,
                f"Unknown model {alias!r}; GET /v1/models lists the available ones.",
            )
        return entry

    def resolve(self, model: str | None) -> ModelEntry:
        if not model:
            return self.get(self.default_alias)
        if model in self.entries:
            return self.entries[model]
        # Accept the upstream model name too, as OpenAI SDK users tend to send it.
        for entry in self.entries.values():
            if entry.provider is not None and getattr(entry.provider, "model", None) == model:
                return entry
        return self.get(model)

    def chain(self, entry: ModelEntry) -> list[ModelEntry]:
        return [entry, *[f for f in self.fallbacks if f.spec.provider != entry.spec.provider]]

    def all_entries(self) -> list[ModelEntry]:
        return [*self.entries.values(), *self.fallbacks]

    def update_gauges(self) -> None:
        m = self.metrics
        for entry in self.all_entries():
            m.in_flight.labels(entry.alias).set(entry.admission.in_flight)
            m.queue_depth.labels(entry.alias).set(entry.admission.waiting)
            m.circuit_state.labels(entry.alias).set(int(entry.breaker.state))
            info = entry.provider_info()
            m.model_memory.labels(entry.alias).set(float(info.get("memory_mb", 0)) * 1024 * 1024)
            for dep in info.get("deployments") or []:
                m.upstream_in_flight.labels(entry.alias, dep["base_url"]).set(dep["in_flight"])
                state = {"closed": 0, "half_open": 1, "open": 2}[dep["circuit"]]
                m.upstream_circuit_state.labels(entry.alias, dep["base_url"]).set(state)

    async def aclose(self) -> None:
        for entry in self.all_entries():
            if entry.provider is not None:
                await entry.provider.aclose()
        if self.embedder is not None:
            await self.embedder.aclose()

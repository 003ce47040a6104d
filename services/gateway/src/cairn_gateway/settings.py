"""Gateway settings: one pydantic-settings class, env prefix `LLM_`, documented in .env.example."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .in_process.offload import parse_gpu_layers


class ModelSpec(BaseModel):
    """One declared model: what `model` in a request may name (see docs/models.md)."""

    alias: str
    provider: str
    model: str = ""  # upstream model name (openai_compat) or a label
    path: str | None = None  # a file (GGUF) or folder (ONNX genai) for in-process providers
    sha256: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    load: bool = True  # load at start-up (in-process providers)


class UpstreamSpec(BaseModel):
    """One OpenAI-compatible deployment in `LLM_UPSTREAMS`; deployments with one alias form one router model."""

    base_url: str
    api_key: SecretStr | None = None
    model: str = ""  # the upstream's model name; default LLM_MODEL
    weight: float = Field(
        1.0, gt=0
    )  # relative capacity: a weight-2 server takes twice the requests in flight
    alias: str | None = None  # default: the default model's alias


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_", extra="ignore", frozen=False, populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8082
    log_level: str = "INFO"

    # The default model. `provider` picks the module; the rest configures it.
    provider: str = "llamacpp"
    model: str = ""
    base_url: str = "http://127.0.0.1:8090/v1"
    api_key: SecretStr | None = None
    model_path: str | None = None
    model_sha256: str | None = None
    embed_provider: str = "onnx"
    models: str = ""  # JSON list of ModelSpec: extra models beside the default
    # JSON list of UpstreamSpec: several OpenAI-compatible servers behind one alias (providers/router.py).
    upstreams: str = ""
    admin_token: SecretStr | None = None

    # Who may call (keys.py): the token shared by the Cairn services, the operator's master key, and where
    # the virtual keys it creates are kept.
    internal_token: SecretStr | None = Field(None, validation_alias="CAIRN_INTERNAL_TOKEN")
    master_key: SecretStr | None = None
    keys_path: str = "./.run/cairn-gateway-keys.sqlite3"
    # How often the live virtual keys are read again (from Redis with CAIRN_REDIS_URL, else from the file when
    # another process changed it): the longest a key revoked or created through another replica is not yet
    # in force here.
    keys_refresh_s: float = Field(1.0, gt=0)

    # Generation defaults and limits.
    max_tokens: int = Field(512, ge=1)  # hard cap per request → 400 TOKEN_LIMIT above it
    default_max_tokens: int = Field(256, ge=1)
    temperature: float = 0.2
    timeout_ms: int = Field(30_000, ge=1)  # total time of one generation
    first_token_timeout_ms: int = Field(15_000, ge=1)
    idle_timeout_ms: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    max_embed_inputs: int = Field(256, ge=1)

    # Admission control, per model.
    max_concurrency: int = Field(2, ge=1)
    queue_size: int = Field(5, ge=0)

    # Resilience.
    retries: int = Field(2, ge=0)
    retry_max_wait_ms: int = Field(2_000, ge=0)
    circuit_failures: int = Field(5, ge=1)
    circuit_reset_ms: int = Field(10_000, ge=1)
    # Shared state (docs/operations.md): with Redis each model's circuit is shared by every gateway replica,
    # so one replica's open circuit protects the others. Unreachable at startup: the gateway refuses to start;
    # later: each replica falls back to its own circuit.
    redis_url: SecretStr | None = Field(None, validation_alias="CAIRN_REDIS_URL")
    # Comma-separated providers tried in order when the model fails. "sources" ends the default chain: an
    # answer quoted from the best source, labelled as such (providers/sources.py). "" = none.
    fallback_providers: str = "sources"
    load_retry_s: float = Field(10.0, gt=0)  # how often a model whose load failed is tried again
    # Written by scripts/setup.sh while llama.cpp compiles in the background (first run); read to say so.
    build_status_path: str = "./.run/llama-build.json"

    # Provider specifics.
    toy_delay_ms: float = Field(0.0, ge=0)
    memory_limit_mb: int = Field(4_096, ge=1)
    threads: int | None = None  # llamacpp: the most threads one generation uses; default all cores
    # llamacpp grounded answers: "extractive" (the model picks a source sentence in one forward pass) or
    # "json" (it writes the citation JSON under a grammar, 3-4x slower per token); docs/models.md.
    grounded_mode: Literal["extractive", "json"] = "extractive"
    extractive_position_prior: float = Field(2.0, ge=0.0)  # logits taken off per place down QS's ranking
    extractive_sentences: int = Field(2, ge=1, le=3)  # the most sentences of the chosen chunk quoted
    context_size: int = Field(4096, ge=256)
    # llamacpp: "auto" renders chat messages with the GGUF's own chat template when its metadata has one,
    # else the base-model `Q: … A:` format; "base" or "chat_template" force one (in_process/chat_template.py).
    prompt_format: Literal["auto", "base", "chat_template"] = "auto"
    # llamacpp: layers offloaded to the GPU: "auto" (all of them when this llama.cpp build has GPU support,
    # none otherwise), an integer, or "none"/0 (in_process/offload.py).
    gpu_layers: str = "auto"
    # llamacpp: "worker" runs the model in a process of its own that the gateway restarts when it dies (a
    # native crash ends its requests with MODEL_CRASHED, never the gateway); "none" loads it in the gateway's
    # own process (providers/isolated.py, docs/models.md).
    model_isolation: Literal["worker", "none"] = "worker"
    # llamacpp: llama.cpp's extra buffer types (AMX, repacked weights). "auto" probes them in the worker and
    # loads without them when the probe dies on a signal; "on" / "off" force them.
    extra_bufts: Literal["auto", "on", "off"] = "auto"
    worker_restart_max_s: float = Field(30.0, gt=0)  # the longest wait before a crashed worker is restarted
    model_cache_dir: str | None = None  # where the packaged GGUF is assembled; default ~/.cache/cairn/models
    embed_batch_size: int = Field(32, ge=1)  # texts per ONNX Runtime call

    @field_validator("provider", "embed_provider")
    @classmethod
    def _lower(cls, v: str) -> str:
        # A "module:Class" import path (a provider of the operator's own) keeps its case.
        return v.strip() if ":" in v else v.strip().lower()

    @field_validator("gpu_layers", mode="before")
    @classmethod
    def _gpu_layers(cls, v: object) -> str:
        return str(parse_gpu_layers(str(v)))

    @cached_property
    def fallback_list(self) -> list[str]:
        return [p.strip().lower() for p in self.fallback_providers.split(",") if p.strip()]

    @cached_property
    def model_specs(self) -> list[ModelSpec]:
        default = ModelSpec(
            alias=self.model or self.provider,
            provider=self.provider,
            model=self.model,
            path=self.model_path,
            sha256=self.model_sha256,
        )
        extra = [ModelSpec.model_validate(m) for m in json.loads(self.models)] if self.models.strip() else []
        specs = [default, *[m for m in extra if m.alias != default.alias]]
        # Upstreams replace a model of the same alias (the default, typically) or add one.
        for router in self._router_specs(default.alias):
            index = next((i for i, m in enumerate(specs) if m.alias == router.alias), None)
            if index is None:
                specs.append(router)
            else:
                specs[index] = router
        return specs

    def _router_specs(self, default_alias: str) -> list[ModelSpec]:
        if not self.upstreams.strip():
            return []
        groups: dict[str, list[UpstreamSpec]] = {}
        for raw in json.loads(self.upstreams):
            up = UpstreamSpec.model_validate(raw)
            groups.setdefault(up.alias or default_alias, []).append(up)
        specs = []
        for alias, ups in groups.items():
            deployments = [
                {
                    "base_url": u.base_url,
                    "api_key": u.api_key.get_secret_value() if u.api_key else None,
                    "model": u.model or self.model,
                    "weight": u.weight,
                }
                for u in ups
            ]
            names = {d["model"] for d in deployments}
            specs.append(
                ModelSpec(
                    alias=alias,
                    provider="router",
                    model=names.pop() if len(names) == 1 else "",
                    # The alias's admission slots grow with its servers: each can run LLM_MAX_CONCURRENCY.
                    params={"deployments": deployments, "max_concurrency": self.max_concurrency * len(ups)},
                )
            )
        return specs

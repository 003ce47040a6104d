"""The operator APIs' wire models: models and readiness, admin actions, virtual keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AdminModelRequest(BaseModel):
    alias: str


class KeyGenerateRequest(BaseModel):
    key_alias: str | None = Field(default=None, max_length=200)


class KeyDeleteRequest(BaseModel):
    keys: list[str] = Field(min_length=1, max_length=1000)


class KeyInfo(BaseModel):
    key: str | None = None  # only in the answer to /key/generate
    key_id: str
    key_alias: str | None
    created_at: float


class KeyList(BaseModel):
    keys: list[KeyInfo]


class KeyDeleted(BaseModel):
    deleted_keys: list[str]


class DeploymentInfo(BaseModel):
    """One server behind a router model (`LLM_UPSTREAMS`), as the gateway sees it now."""

    base_url: str  # without credentials or query string
    model: str
    weight: float
    in_flight: int
    requests: int
    failures: int
    circuit: str
    last_error: str | None = None


class ModelInfo(BaseModel):
    """A chat model (registry entry) or the embedder; provider details follow the common fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"]
    owned_by: str
    provider: str
    state: str
    default: bool | None = None
    kind: Literal["embedding"] | None = None
    upstream_model: str | None = None
    memory_mb: float | None = None
    circuit: str | None = None
    error: str | None = None
    dims: int | None = None
    routing: Literal["least_in_flight"] | None = None  # router models only
    deployments: list[DeploymentInfo] | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelInfo]


class GatewayReady(BaseModel):
    """`degraded`: the default model is not usable, but the fallback chain answers (see `message`)."""

    status: Literal["ready", "degraded"]
    model: str
    provider: str
    reason_code: str | None = None
    message: str | None = None
    request_id: str | None = None
    fallbacks: list[str] = []
    build: dict[str, Any] | None = None

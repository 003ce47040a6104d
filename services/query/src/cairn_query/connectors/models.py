"""Wire models of `/v1/connectors` (docs/connectors.md): a source as configured, and its last run's status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cairn_query.connectors.base import CONNECTORS

_NAME = r"^[A-Za-z0-9._-]{1,64}$"
MAX_INTERVAL_S = 7 * 86400


def _known_kind(v: str) -> str:
    if v not in CONNECTORS:
        raise ValueError(f"'kind' is one of {', '.join(sorted(CONNECTORS))}")
    return v


class ConnectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="unique; the source's documents carry it as metadata.source")
    kind: str = Field(description="folder, website or git")
    config: dict[str, Any] = Field(description="the connector's settings (docs/connectors.md)")
    collection: str = Field("default", pattern=_NAME)
    interval_s: float = Field(300.0, ge=0, le=MAX_INTERVAL_S, description="between scheduled runs; 0: none")
    enabled: bool = True

    _kind = field_validator("kind")(_known_kind)


class ConnectorPatch(BaseModel):
    """What `PATCH /v1/connectors/{name}` may change; what it leaves out stays."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = None
    collection: str | None = Field(None, pattern=_NAME)
    interval_s: float | None = Field(None, ge=0, le=MAX_INTERVAL_S)
    enabled: bool | None = None


class ConnectorFailure(BaseModel):
    key: str
    reason_code: str
    message: str


class ConnectorRun(BaseModel):
    source: str
    id: str = Field(description="this run's id")
    trigger: str = Field(description="schedule, watch or manual")
    state: str = Field(description="running, ok, partial (some items failed) or failed (the whole run)")
    started_at: str
    finished_at: str | None
    seen: int
    added: int
    changed: int
    unchanged: int
    renamed: int
    deleted: int
    failed: int
    failures: list[ConnectorFailure] = Field(description="the first 100 failed items, each with its reason")
    error: dict[str, str] | None = Field(description="reason_code and message when the whole run failed")
    duration_s: float | None


class ConnectorOut(BaseModel):
    name: str
    kind: str
    config: dict[str, Any]
    collection: str
    interval_s: float
    enabled: bool
    created_at: str
    updated_at: str
    running: bool = Field(description="a run holds the source's lease now (on any replica)")
    documents: int = Field(description="documents the source holds in the store")
    status: ConnectorRun | None = Field(description="the last run's (or the running one's) status")


class ConnectorList(BaseModel):
    sources: list[ConnectorOut]


class ConnectorDeleted(BaseModel):
    name: str
    deleted: bool
    documents_deleted: int


class ConnectorRunStarted(BaseModel):
    name: str
    started: bool = Field(description="false when a run was already going (here or on another replica)")
    running: bool
    status: ConnectorRun | None


class ConnectorStatus(BaseModel):
    name: str
    running: bool
    status: ConnectorRun | None = Field(description="null before the first run")

"""What the BFF itself checks of a request before forwarding it; QS validates the rest and answers 4xx."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ChatProxyRequest(BaseModel):
    """Only `stream` decides how the BFF proxies; every other field travels to QS byte for byte."""

    model_config = ConfigDict(extra="allow")

    stream: bool = False


# --- what the BFF itself answers (for /openapi.json; /api routes answer what QS and the gateway do) ---------


class UpstreamSummary(BaseModel):
    """A service's /metrics, summarised (dashboard.py); `error` names what failed when it is down."""

    model_config = ConfigDict(extra="allow")

    up: bool
    error: str | None = None


class DashboardData(BaseModel):
    at: float
    gateway: UpstreamSummary
    query: UpstreamSummary
    bff: dict[str, Any]


class ServicesUp(BaseModel):
    gateway: bool
    query: bool


class DashboardPoint(BaseModel):
    """One sampling interval (history.py, series.py); a series is null where its service did not answer."""

    t: float  # the interval's end, seconds since the epoch
    interval_s: float
    ttft_p50_s: float | None  # of the streams that started in the interval; null when none did
    ttft_p95_s: float | None
    tokens_per_s: float | None  # completion tokens generated, over the interval
    requests_per_min: dict[str, float] | None  # gateway requests by outcome (ok, fallback, error)
    fallbacks_per_min: dict[str, float] | None  # gateway and QS fallbacks by reason code
    queue_depth: float | None  # requests waiting for a generation slot, at the interval's end
    up: ServicesUp


class DashboardSeries(BaseModel):
    sample_s: float
    history_s: float
    source: Literal["memory", "redis"]
    points: list[DashboardPoint]  # oldest first


class BffReady(BaseModel):
    status: Literal["ready"]
    query_service: Literal["up"]


class Me(BaseModel):
    """Who the BFF takes the caller for (identity.py): their user, name and groups, and how they came in."""

    user: str
    name: str
    groups: list[str]
    admin: bool
    operator: bool
    via: Literal["admin-key", "key", "managed-key", "proxy", "oidc", "local"]
    login: bool

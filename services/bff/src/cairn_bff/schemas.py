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


class BffReady(BaseModel):
    status: Literal["ready"]
    query_service: Literal["up"]

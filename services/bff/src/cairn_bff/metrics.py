"""Prometheus metrics of the BFF, on a registry owned by the app (no module-level state)."""

from __future__ import annotations

from cairn_core import BffMetric as M
from prometheus_client import CollectorRegistry, Counter, Gauge


class BffMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            M.REQUESTS, "API requests by route and HTTP status", ["route", "status"], registry=r
        )
        self.rejected = Counter(
            M.REJECTED, "Requests refused before reaching a handler", ["reason_code"], registry=r
        )
        self.streams = Gauge(M.STREAMS_ACTIVE, "Chat streams being relayed now", registry=r)
        self.stream_outcomes = Counter(
            M.STREAMS,
            "Relayed chat streams by how they ended: complete, client_gone, upstream_broken",
            ["outcome"],
            registry=r,
        )

"""Prometheus metrics of the BFF, on a registry owned by the app (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class BffMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cairn_bff_requests", "API requests by route and HTTP status", ["route", "status"], registry=r
        )
        self.rejected = Counter(
            "cairn_bff_rejected", "Requests refused before reaching a handler", ["reason_code"], registry=r
        )
        self.streams = Gauge("cairn_bff_streams_active", "Chat streams being relayed now", registry=r)
        self.stream_outcomes = Counter(
            "cairn_bff_streams",
            "Relayed chat streams by how they ended: complete, client_gone, upstream_broken",
            ["outcome"],
            registry=r,
        )

"""Prometheus metrics of the gateway, on a registry owned by the app (no module-level state)."""

from __future__ import annotations

from cairn_core import GatewayMetric as M
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes: what an in-process model really costs.
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            M.REQUESTS,
            "Requests by endpoint, final status and reason code",
            ["endpoint", "status", "reason_code", "provider"],
            registry=r,
        )
        self.latency = Histogram(
            M.LATENCY,
            "End-to-end latency of a generation",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            M.TTFT,
            "Time until the first token of a stream",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            M.TOKENS,
            "Tokens processed",
            ["provider", "kind"],
            registry=r,
        )
        self.tokens_per_second = Histogram(
            M.TOKENS_PER_SECOND,
            "Completion tokens per second of a generation",
            ["provider"],
            buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )
        self.fallbacks = Counter(
            M.FALLBACKS,
            "Answers served by a fallback provider or degraded, by reason",
            ["reason_code"],
            registry=r,
        )
        self.in_flight = Gauge(M.IN_FLIGHT, "Generations running now", ["model"], registry=r)
        self.queue_depth = Gauge(M.QUEUE_DEPTH, "Requests waiting for a slot", ["model"], registry=r)
        self.circuit_state = Gauge(
            M.CIRCUIT_STATE,
            "Circuit state per model: 0 closed, 1 half-open, 2 open",
            ["model"],
            registry=r,
        )
        self.provider_up = Gauge(
            M.PROVIDER_UP, "1 when the model answers health checks", ["model"], registry=r
        )
        self.model_memory = Gauge(
            "cairn_gateway_model_memory_bytes", "Memory held by a loaded model", ["model"], registry=r
        )
        # In-process models run in a worker process (providers/isolated.py): its deaths and restarts.
        self.model_crashes = Counter(
            M.MODEL_CRASHES,
            "Model worker processes that died, by phase (probe, load, serving)",
            ["model", "phase"],
            registry=r,
        )
        self.model_restarts = Counter(
            "cairn_gateway_model_restarts",
            "Model worker processes started again after a crash",
            ["model"],
            registry=r,
        )
        self.embeddings = Counter("cairn_gateway_embedded_texts", "Texts embedded", ["model"], registry=r)
        # Its count is the embedding requests: a client that embeds one text per call shows here.
        self.embed_inputs = Histogram(
            "cairn_gateway_embed_inputs",
            "Texts per embedding request",
            ["model"],
            buckets=(1, 8, 32, 64, 128, 256, 1024),
            registry=r,
        )
        # Router models (LLM_UPSTREAMS): the same two numbers per server behind the alias.
        self.upstream_in_flight = Gauge(
            "cairn_gateway_upstream_in_flight",
            "Requests in flight per upstream server of a router model",
            ["model", "upstream"],
            registry=r,
        )
        self.upstream_circuit_state = Gauge(
            "cairn_gateway_upstream_circuit_state",
            "Circuit state per upstream server of a router model: 0 closed, 1 half-open, 2 open",
            ["model", "upstream"],
            registry=r,
        )

"""Prometheus metrics of the gateway, on a registry owned by the app (no module-level state).

Generation requests are recorded in one place (serving/base.py `record`); the gauges are set from the model
registry when `/metrics` is scraped (`ModelRegistry.update_gauges`).
"""

from __future__ import annotations

from cairn_core import GatewayMetric as M
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes: what an in-process model really costs.
        ProcessCollector(registry=self.registry)
        self._per_request()
        self._per_model()
        self._per_part()

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def _per_request(self) -> None:
        """One finished generation request each (serving/base.py)."""
        counter, histogram = self.counter, self.histogram
        self.requests = counter(
            M.REQUESTS,
            "Requests by endpoint, final status and reason code",
            "endpoint",
            "status",
            "reason_code",
            "provider",
        )
        self.latency = histogram(
            M.LATENCY, "End-to-end latency of a generation", _LATENCY_BUCKETS, "endpoint"
        )
        self.ttft = histogram(M.TTFT, "Time until the first token of a stream", _LATENCY_BUCKETS, "provider")
        self.tokens = counter(M.TOKENS, "Tokens processed", "provider", "kind")
        self.tokens_per_second = histogram(
            M.TOKENS_PER_SECOND, "Completion tokens per second of a generation", _RATE_BUCKETS, "provider"
        )
        self.fallbacks = counter(
            M.FALLBACKS, "Answers served by a fallback provider or degraded, by reason", "reason_code"
        )

    def _per_model(self) -> None:
        """As the registry sees each model at the scrape."""
        counter, gauge = self.counter, self.gauge
        self.in_flight = gauge(M.IN_FLIGHT, "Generations running now", "model")
        self.queue_depth = gauge(M.QUEUE_DEPTH, "Requests waiting for a slot", "model")
        self.circuit_state = gauge(
            M.CIRCUIT_STATE, "Circuit state per model: 0 closed, 1 half-open, 2 open", "model"
        )
        self.provider_up = gauge(M.PROVIDER_UP, "1 when the model answers health checks", "model")
        self.model_memory = gauge(
            "cairn_gateway_model_memory_bytes", "Memory held by a loaded model", "model"
        )

        # In-process models run in a worker process (providers/isolated.py): its deaths and restarts.
        self.model_crashes = counter(
            M.MODEL_CRASHES,
            "Model worker processes that died, by phase (probe, load, serving)",
            "model",
            "phase",
        )
        self.model_restarts = counter(
            "cairn_gateway_model_restarts", "Model worker processes started again after a crash", "model"
        )

    def _per_part(self) -> None:
        """The embedder, and each server behind a router model."""
        counter, gauge, histogram = self.counter, self.gauge, self.histogram
        self.embeddings = counter("cairn_gateway_embedded_texts", "Texts embedded", "model")
        # Its count is the embedding requests: a client that embeds one text per call shows here.
        self.embed_inputs = histogram(
            "cairn_gateway_embed_inputs",
            "Texts per embedding request",
            (1, 8, 32, 64, 128, 256, 1024),
            "model",
        )

        # Router models (LLM_UPSTREAMS): the same two numbers per server behind the alias.
        self.upstream_in_flight = gauge(
            "cairn_gateway_upstream_in_flight",
            "Requests in flight per upstream server of a router model",
            "model",
            "upstream",
        )
        self.upstream_circuit_state = gauge(
            "cairn_gateway_upstream_circuit_state",
            "Circuit state per upstream server of a router model: 0 closed, 1 half-open, 2 open",
            "model",
            "upstream",
        )

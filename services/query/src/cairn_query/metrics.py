"""Prometheus metrics of the query service, on a registry owned by the app (no module-level state)."""

from __future__ import annotations

from cairn_core import QueryMetric as M
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class QueryMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            M.REQUESTS, "Requests by endpoint and outcome", ["endpoint", "status"], registry=r
        )
        self.cache = Counter(M.CACHE, "Answer cache lookups", ["result"], registry=r)
        self.fallbacks = Counter(
            M.FALLBACKS, "Answers degraded to search results, by reason", ["reason_code"], registry=r
        )
        self.retrieval_latency = Histogram(
            M.RETRIEVAL_LATENCY,
            "Hybrid retrieval time, query embedding included",
            ["mode"],
            buckets=_FAST,
            registry=r,
        )
        self.gateway_latency = Histogram(
            "cairn_qs_gateway_latency_seconds",
            "Time of /v1/generate calls",
            ["stream"],
            buckets=_SLOW,
            registry=r,
        )
        self.ingested_chunks = Counter("cairn_qs_ingested_chunks", "Chunks written", registry=r)
        # Every text QS has the gateway embed for documents (ingest, retries, reembed; not questions): a sync
        # that re-embeds nothing unchanged leaves it still (connectors/sync.py, docs/connectors.md).
        self.embedded_texts = Counter("cairn_qs_embedded_texts", "Texts embedded for documents", registry=r)
        self.circuit_open = Gauge("cairn_qs_circuit_open", "1 while the gateway circuit is open", registry=r)
        self.documents = Gauge("cairn_qs_documents", "Documents in the store", registry=r)
        self.chunks = Gauge("cairn_qs_chunks", "Chunks in the store", registry=r)
        # Governance (policy.py, audit.py).
        self.policy_findings = Counter(
            "cairn_qs_policy_findings",
            "What the policy's rules found, by rule and action",
            ["rule", "action"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "cairn_qs_policy_reloads", "Policy reloads, by result (ok or refused)", ["result"], registry=r
        )
        self.feedback = Counter(M.FEEDBACK, "Ratings of answers, by rating", ["rating"], registry=r)
        self.audit_failures = Counter(
            "cairn_qs_audit_failures", "Audit records that could not be written", registry=r
        )
        self.audit_latency = Histogram(
            "cairn_qs_audit_write_seconds", "Time to append one audit record", buckets=_FAST, registry=r
        )

"""Live generation metrics for the dashboard page: the services' Prometheus text, summarised into small JSON,
and each model's manifest from the gateway's `/v1/models`.

Parsed server-side with `prometheus_client.parser` so the page stays a few lines of plain JS and never needs
to reach the gateway or QS itself (they may not be reachable from the browser at all).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from cairn_core import BffMetric, GatewayMetric, QueryMetric, total
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _sum_by(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        if s.name == name:
            out[s.labels.get(label, "") or "none"] += s.value
    return dict(out)


def _gauge_by(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    return {s.labels.get(label, ""): s.value for s in samples if s.name == name}


def histogram(samples: list[Sample], name: str) -> dict[str, Any]:
    """Count, mean and bucket-estimated p50/p95 of a histogram, summed over its labels; with its cumulative
    finite buckets as `[le, count]` pairs, so the dashboard's sampler can tell what one interval added."""
    buckets: dict[float, float] = defaultdict(float)
    count = total = 0.0
    for s in samples:
        if s.name == f"{name}_bucket":
            buckets[float(s.labels["le"])] += s.value
        elif s.name == f"{name}_count":
            count += s.value
        elif s.name == f"{name}_sum":
            total += s.value
    return {
        "count": count,
        "mean": total / count if count else None,
        "p50": quantile(buckets, count, 0.5),
        "p95": quantile(buckets, count, 0.95),
        "buckets": [[le, buckets[le]] for le in sorted(buckets) if not math.isinf(le)],
    }


def quantile(buckets: dict[float, float], count: float, q: float) -> float | None:
    # Linear interpolation inside the bucket, as PromQL's histogram_quantile does.
    if not count:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for le in sorted(buckets):
        cumulative = buckets[le]
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            width = cumulative - below
            return lower + (le - lower) * ((rank - below) / width if width else 1.0)
        lower, below = le, cumulative
    return lower


def gateway_summary(samples: list[Sample]) -> dict[str, Any]:
    m = GatewayMetric
    requests_by_status = _sum_by(samples, total(m.REQUESTS), "status")
    return {
        "time_to_first_token_s": histogram(samples, m.TTFT),
        "tokens_per_second": histogram(samples, m.TOKENS_PER_SECOND),
        "latency_s": histogram(samples, m.LATENCY),
        "requests_total": sum(requests_by_status.values()),
        "requests_by_status": requests_by_status,
        "requests_by_reason": _sum_by(samples, total(m.REQUESTS), "reason_code"),
        "fallbacks_by_reason": _sum_by(samples, total(m.FALLBACKS), "reason_code"),
        "queue_depth": _gauge_by(samples, m.QUEUE_DEPTH, "model"),
        "in_flight": _gauge_by(samples, m.IN_FLIGHT, "model"),
        "provider_up": _gauge_by(samples, m.PROVIDER_UP, "model"),
        "circuit_state": _gauge_by(samples, m.CIRCUIT_STATE, "model"),
        "tokens": _sum_by(samples, total(m.TOKENS), "kind"),
        # In-process models run in a worker process: how often it died (and was restarted), per model.
        "model_crashes": _sum_by(samples, total(m.MODEL_CRASHES), "model"),
    }


def query_summary(samples: list[Sample]) -> dict[str, Any]:
    m = QueryMetric
    requests_by_status = _sum_by(samples, total(m.REQUESTS), "status")
    return {
        "requests_total": sum(requests_by_status.values()),
        "requests_by_status": requests_by_status,
        "fallbacks_by_reason": _sum_by(samples, total(m.FALLBACKS), "reason_code"),
        "cache": _sum_by(samples, total(m.CACHE), "result"),
        "retrieval_latency_s": histogram(samples, m.RETRIEVAL_LATENCY),
        # Ratings of answers since QS started (GET /admin/feedback has them all, from the store).
        "feedback": {"up": 0.0, "down": 0.0, **_sum_by(samples, total(m.FEEDBACK), "rating")},
    }


def bff_summary(samples: list[Sample]) -> dict[str, Any]:
    m = BffMetric
    return {
        "requests_by_status": _sum_by(samples, total(m.REQUESTS), "status"),
        "rejected_by_reason": _sum_by(samples, total(m.REJECTED), "reason_code"),
        "streams_active": sum(_gauge_by(samples, m.STREAMS_ACTIVE, "").values()),
        "streams_by_outcome": _sum_by(samples, total(m.STREAMS), "outcome"),
    }


def model_manifests(models_json: str) -> list[dict[str, Any]]:
    """One row per model of the gateway's `/v1/models`: its state and what its manifest says (docs/models.md);
    `manifest: null` for a model another server serves (the gateway holds no file of it)."""
    try:
        models = json.loads(models_json)["data"]
    except (ValueError, KeyError, TypeError):  # not the gateway's answer: no rows rather than no dashboard
        return []
    rows = []
    for m in models:
        man = m.get("manifest") or {}
        params = man.get("parameters") or {}
        sha = man.get("sha256")
        rows.append(
            {
                "model": m.get("id"),
                "state": m.get("state"),
                "reason_code": m.get("reason_code"),
                "worker_crashes": m.get("worker_crashes"),
                "notice": m.get("notice"),
                "manifest": None
                if not man
                else {
                    "name": man.get("name"),
                    "file": man.get("file"),
                    "size_bytes": man.get("size_bytes"),
                    "sha256_short": sha[:12] if sha else None,
                    "licence": man.get("licence"),
                    "source": man.get("source"),
                    "source_url": man.get("source_url"),
                    "quantisation": params.get("quantisation"),
                    "context_size": params.get("context_size"),
                    "prompt_format": man.get("prompt_format"),
                    "origin": man.get("origin"),
                },
            }
        )
    return rows

"""Live generation metrics for the dashboard page: the services' Prometheus text, summarised into small JSON,
and each model's manifest from the gateway's `/v1/models`.

Parsed server-side with `prometheus_client.parser` so the page stays a few lines of plain JS and never needs
to reach the gateway or QS itself (they may not be reachable from the browser at all). `/api/dashboard` is one
poll of them all; `/api/dashboard/series` the charts' points from the history the sampler keeps (history.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from typing import Any

from cairn_core import (
    BadRequest,
    BffMetric,
    GatewayMetric,
    JSONResponse,
    Param,
    QueryMetric,
    metrics_response,
    total,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import Response

from .openapi import API_SECURITY, endpoint
from .proxy import Upstream
from .schemas import DashboardData, DashboardSeries

_NO_CACHE = {"Cache-Control": "no-cache"}  # every poll asks again


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


# --- the dashboard's JSON: one poll, and the charts' points ----------------------------------------------------


@endpoint("GET", "/api/dashboard", DashboardData, tags="dashboard", errors=(401, 429), security=API_SECURITY)
async def dashboard_data(request: Request) -> Response:
    """One poll of the dashboard: every service's metrics, summarised

    Every service's /metrics, and the gateway's models with their manifests; a service that is down shows as
    down."""
    state = request.app.state
    timeout = state.settings.metrics_timeout_s
    gateway: Upstream = state.gateway
    query: Upstream = state.qs
    gw, qs, models = await asyncio.gather(
        gateway.get_text("/metrics", timeout),
        query.get_text("/metrics", timeout),
        gateway.get_text("/v1/models", timeout),
        return_exceptions=True,
    )
    own = parse(bytes(metrics_response(state.metrics.registry).body).decode())
    return JSONResponse(
        {
            "at": time.time(),
            "gateway": {
                "up": True,
                **gateway_summary(parse(gw)),
                "models": model_manifests(models) if isinstance(models, str) else [],
            }
            if isinstance(gw, str)
            else {"up": False, "error": type(gw).__name__},
            "query": {"up": True, **query_summary(parse(qs))}
            if isinstance(qs, str)
            else {"up": False, "error": type(qs).__name__},
            "bff": bff_summary(own),
        },
        headers=_NO_CACHE,
    )


@endpoint(
    "GET",
    "/api/dashboard/series",
    DashboardSeries,
    tags="dashboard",
    errors=(400, 401, 429),
    params=[Param("since", "query", {"type": "number"}, description="only points with a larger `t`")],
    security=API_SECURITY,
)
async def dashboard_series(request: Request) -> Response:
    """The dashboard's charts: one point per sampling interval over the last hour (`?since=` for newer)

    The points come from the history the sampler keeps (history.py): nothing is scraped here. With
    `?since=<t>` only the points after `t` (a point's `t`), so a page that has the hour asks for what is new."""
    settings = request.app.state.settings
    since = request.query_params.get("since") or "-inf"
    try:
        after = float(since)
    except ValueError:
        after = math.nan
    if math.isnan(after) or after == math.inf:
        raise BadRequest("since must be a time in seconds since the epoch (a point's t).")
    points, source = await request.app.state.history.points()
    # Never older than the history, even if Redis still holds points of a deployment that stopped a while ago.
    after = max(after, time.time() - settings.dashboard_history_s)
    return JSONResponse(
        {
            "sample_s": settings.dashboard_sample_s,
            "history_s": settings.dashboard_history_s,
            "source": source,
            "points": [p for p in points if p["t"] > after],
        },
        headers=_NO_CACHE,
    )

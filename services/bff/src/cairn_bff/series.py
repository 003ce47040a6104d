"""The dashboard's time series: what one sampling interval added, computed from two scrapes of the services.

Prometheus counters and histograms only ever grow, so a point is the difference between two snapshots taken
`interval` seconds apart: requests and fallbacks per minute from counter deltas, tokens per second from the
completion-token counter, and TTFT p50/p95 of the streams that started in the interval from the histogram's
bucket deltas (a percentile of the cumulative histogram would barely move after a busy hour). Queue depth is
a gauge: its value now. A counter that went down means its service restarted; then, as PromQL's `rate()`
does, the new value is what the interval added.

A snapshot is built from `dashboard.gateway_summary`/`query_summary`, which hold every metric name the
dashboard reads; this module never names a metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .dashboard import quantile

Point = dict[str, Any]


@dataclass(frozen=True)
class GatewaySnapshot:
    ttft_buckets: dict[float, float]  # cumulative, +Inf holds the count
    ttft_count: float
    completion_tokens: float
    requests_by_status: dict[str, float]
    fallbacks_by_reason: dict[str, float]
    queue_depth: float


@dataclass(frozen=True)
class Snapshot:
    """One scrape: `at` is wall-clock time (the chart's x), `mono` measures the interval between two scrapes.
    A service that did not answer (or, with several QS replicas, not all of them) is None."""

    at: float
    mono: float
    gateway: GatewaySnapshot | None
    query_fallbacks: dict[str, float] | None


def gateway_snapshot(summary: dict[str, Any]) -> GatewaySnapshot:
    ttft = summary["time_to_first_token_s"]
    buckets = {float(le): float(n) for le, n in ttft["buckets"]}
    buckets[math.inf] = float(ttft["count"])
    return GatewaySnapshot(
        ttft_buckets=buckets,
        ttft_count=float(ttft["count"]),
        completion_tokens=float(summary["tokens"].get("completion", 0.0)),
        requests_by_status=dict(summary["requests_by_status"]),
        fallbacks_by_reason=dict(summary["fallbacks_by_reason"]),
        queue_depth=float(sum(summary["queue_depth"].values())),
    )


def counter_delta(now: float, before: float) -> float:
    """What a counter added since `before`; all of `now` when it went down (its process restarted)."""
    return now - before if now >= before else now


def counters_delta(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Per label value; one that is new counts from zero. A process restart resets every series of a counter
    at once, so a drop of the total means restart for all of them."""
    if sum(now.values()) < sum(before.values()):
        return dict(now)
    return {k: counter_delta(v, before.get(k, 0.0)) for k, v in now.items()}


def interval_quantiles(
    now: dict[float, float], now_count: float, before: dict[float, float], before_count: float
) -> tuple[float | None, float | None]:
    """p50 and p95 of the observations made between two cumulative histograms (None when there were none)."""
    if now_count < before_count:  # restarted: everything it holds is new
        buckets, count = now, now_count
    else:
        buckets = {le: counter_delta(n, before.get(le, 0.0)) for le, n in now.items()}
        count = now_count - before_count
    return quantile(buckets, count, 0.5), quantile(buckets, count, 0.95)


def _per_minute(counts: dict[str, float], interval_s: float) -> dict[str, float]:
    return {k: _round(v * 60.0 / interval_s) for k, v in sorted(counts.items())}


def _round(x: float) -> float:
    # Four significant digits are all a chart shows, and they keep an hour of points small.
    return float(f"{x:.4g}")


def point(before: Snapshot, now: Snapshot) -> Point:
    """The point for the interval that ends at `now`. A series whose service did not answer at either end
    is null there: the chart shows a gap, not a made-up zero."""
    interval = now.mono - before.mono
    if interval <= 0:
        raise ValueError("snapshots out of order")
    out: Point = {
        "t": round(now.at, 3),
        "interval_s": round(interval, 3),
        "ttft_p50_s": None,
        "ttft_p95_s": None,
        "tokens_per_s": None,
        "requests_per_min": None,
        "fallbacks_per_min": None,
        "queue_depth": None,
        "up": {"gateway": now.gateway is not None, "query": now.query_fallbacks is not None},
    }
    gw, gw0 = now.gateway, before.gateway
    if gw is not None:
        out["queue_depth"] = gw.queue_depth
    if gw is not None and gw0 is not None:
        p50, p95 = interval_quantiles(gw.ttft_buckets, gw.ttft_count, gw0.ttft_buckets, gw0.ttft_count)
        out["ttft_p50_s"] = None if p50 is None else _round(p50)
        out["ttft_p95_s"] = None if p95 is None else _round(p95)
        tokens = counter_delta(gw.completion_tokens, gw0.completion_tokens)
        out["tokens_per_s"] = _round(tokens / interval)
        out["requests_per_min"] = _per_minute(
            counters_delta(gw.requests_by_status, gw0.requests_by_status), interval
        )
    # The gateway's fallbacks (another provider answered) and QS's (search results instead of an answer)
    # have different reason codes; the page shows them together, as the fallbacks card does.
    deltas = []
    if gw is not None and gw0 is not None:
        deltas.append(counters_delta(gw.fallbacks_by_reason, gw0.fallbacks_by_reason))
    if now.query_fallbacks is not None and before.query_fallbacks is not None:
        deltas.append(counters_delta(now.query_fallbacks, before.query_fallbacks))
    if deltas:
        fallbacks: dict[str, float] = {}
        for delta in deltas:
            for k, v in delta.items():
                fallbacks[k] = fallbacks.get(k, 0.0) + v
        out["fallbacks_per_min"] = _per_minute(fallbacks, interval)
    return out

"""The dashboard's time series: points from two scrapes (series.py) and the in-memory ring (history.py).

Snapshots are made from real Prometheus text, written by prometheus_client under the gateway's and QS's metric
names, and read through dashboard.py as the sampler reads them.
"""

from __future__ import annotations

import asyncio

import pytest
from cairn_bff import dashboard, series
from cairn_bff.history import MemoryRing
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5)


class FakeServices:
    """The gateway's and QS's metrics as their registries expose them (same names, labels and buckets)."""

    def __init__(self) -> None:
        self.gw = CollectorRegistry()
        self.qs = CollectorRegistry()
        self.requests = Counter(
            "cairn_gateway_requests", "r", ["endpoint", "status", "reason_code", "provider"], registry=self.gw
        )
        self.ttft = Histogram(
            "cairn_gateway_time_to_first_token_seconds", "t", ["provider"], buckets=BUCKETS, registry=self.gw
        )
        self.tokens = Counter("cairn_gateway_tokens", "t", ["provider", "kind"], registry=self.gw)
        self.gw_fallbacks = Counter("cairn_gateway_fallbacks", "f", ["reason_code"], registry=self.gw)
        self.queue = Gauge("cairn_gateway_queue_depth", "q", ["model"], registry=self.gw)
        self.qs_fallbacks = Counter("cairn_qs_fallbacks", "f", ["reason_code"], registry=self.qs)

    def snapshot(self, mono: float, *, gateway: bool = True, query: bool = True) -> series.Snapshot:
        gw = dashboard.gateway_summary(dashboard.parse(generate_latest(self.gw).decode()))
        qs = dashboard.query_summary(dashboard.parse(generate_latest(self.qs).decode()))
        return series.Snapshot(
            at=1_700_000_000.0 + mono,
            mono=mono,
            gateway=series.gateway_snapshot(gw) if gateway else None,
            query_fallbacks=qs["fallbacks_by_reason"] if query else None,
        )


def test_ttft_percentiles_are_of_the_interval_not_of_all_time() -> None:
    svc = FakeServices()
    for _ in range(100):  # a fast hour before
        svc.ttft.labels("toy").observe(0.05)
    before = svc.snapshot(0)
    for _ in range(10):  # then the model slows down
        svc.ttft.labels("toy").observe(2.0)
    p = series.point(before, svc.snapshot(10))
    assert p["ttft_p50_s"] is not None and 1.0 < p["ttft_p50_s"] <= 2.5
    assert p["ttft_p95_s"] is not None and 1.0 < p["ttft_p95_s"] <= 2.5
    # The cumulative histogram still says "fast": the chart would have hidden the slowdown.
    everything = dashboard.histogram(
        dashboard.parse(generate_latest(svc.gw).decode()), "cairn_gateway_time_to_first_token_seconds"
    )
    assert everything["p50"] is not None and everything["p50"] < 0.1


def test_an_interval_without_streams_has_no_ttft_rather_than_zero() -> None:
    svc = FakeServices()
    svc.ttft.labels("toy").observe(0.2)
    before = svc.snapshot(0)
    p = series.point(before, svc.snapshot(10))
    assert (p["ttft_p50_s"], p["ttft_p95_s"]) == (None, None)
    assert p["tokens_per_s"] == 0.0


def test_rates_per_minute_and_tokens_per_second_come_from_counter_deltas() -> None:
    svc = FakeServices()
    svc.requests.labels("generate", "ok", "", "toy").inc(50)  # before the interval: not counted
    svc.tokens.labels("toy", "completion").inc(1000)
    svc.tokens.labels("toy", "prompt").inc(5000)
    before = svc.snapshot(100)
    svc.requests.labels("generate", "ok", "", "toy").inc(5)
    svc.requests.labels("generate", "fallback", "PROVIDER_TIMEOUT", "toy").inc(1)
    svc.gw_fallbacks.labels("PROVIDER_TIMEOUT").inc(1)
    svc.qs_fallbacks.labels("NO_CONTEXT").inc(2)
    svc.tokens.labels("toy", "completion").inc(250)
    svc.tokens.labels("toy", "prompt").inc(9999)  # prompt tokens are read, not generated
    svc.queue.labels("toy").set(3)
    p = series.point(before, svc.snapshot(110))
    assert p["interval_s"] == 10
    assert p["requests_per_min"] == {"ok": 30.0, "fallback": 6.0}
    assert p["fallbacks_per_min"] == {"NO_CONTEXT": 12.0, "PROVIDER_TIMEOUT": 6.0}
    assert p["tokens_per_s"] == 25.0
    assert p["queue_depth"] == 3.0
    assert p["up"] == {"gateway": True, "query": True}


def test_a_restarted_service_counts_from_zero_instead_of_going_negative() -> None:
    old, new = FakeServices(), FakeServices()
    old.requests.labels("generate", "ok", "", "toy").inc(500)
    old.tokens.labels("toy", "completion").inc(10_000)
    for _ in range(50):
        old.ttft.labels("toy").observe(0.05)
    before = old.snapshot(0)
    new.requests.labels("generate", "ok", "", "toy").inc(2)  # the restarted gateway's first requests
    new.tokens.labels("toy", "completion").inc(100)
    new.ttft.labels("toy").observe(0.4)
    new.ttft.labels("toy").observe(0.4)
    p = series.point(before, new.snapshot(10))
    assert p["requests_per_min"] == {"ok": 12.0}
    assert p["tokens_per_s"] == 10.0
    assert p["ttft_p50_s"] is not None and 0.25 < p["ttft_p50_s"] <= 0.5


def test_a_service_that_did_not_answer_leaves_a_gap_not_a_zero() -> None:
    svc = FakeServices()
    svc.qs_fallbacks.labels("NO_CONTEXT").inc(1)
    svc.queue.labels("toy").set(2)
    before = svc.snapshot(0, gateway=False)
    svc.qs_fallbacks.labels("NO_CONTEXT").inc(1)
    p = series.point(before, svc.snapshot(60))
    # The gateway is back, but there is nothing to subtract from: rates unknown, its gauge known.
    assert (p["requests_per_min"], p["tokens_per_s"], p["ttft_p50_s"]) == (None, None, None)
    assert p["queue_depth"] == 2.0
    assert p["fallbacks_per_min"] == {"NO_CONTEXT": 1.0}  # QS answered at both ends
    down = series.point(svc.snapshot(60), svc.snapshot(70, gateway=False, query=False))
    assert down["up"] == {"gateway": False, "query": False}
    assert (down["queue_depth"], down["fallbacks_per_min"]) == (None, None)


@pytest.mark.parametrize(
    ("now", "before", "delta"),
    [({"a": 5.0, "b": 1.0}, {"a": 3.0}, {"a": 2.0, "b": 1.0}), ({"a": 1.0}, {"a": 9.0}, {"a": 1.0})],
)
def test_counters_delta(now: dict[str, float], before: dict[str, float], delta: dict[str, float]) -> None:
    assert series.counters_delta(now, before) == delta


def test_snapshots_out_of_order_are_refused() -> None:
    svc = FakeServices()
    with pytest.raises(ValueError):
        series.point(svc.snapshot(10), svc.snapshot(10))


def test_the_memory_ring_keeps_only_the_newest_points_oldest_first() -> None:
    async def fill() -> tuple[list[series.Point], str]:
        ring = MemoryRing(3)
        for i in range(5):
            await ring.append({"t": float(i)})
        return await ring.points()

    points, source = asyncio.run(fill())
    assert [p["t"] for p in points] == [2.0, 3.0, 4.0]
    assert source == "memory"


async def test_the_series_endpoint_serves_the_ring_and_what_is_newer_than_since() -> None:
    from cairn_testing import free_port

    from .conftest import app_client

    dead = f"http://127.0.0.1:{free_port()}"
    async with app_client(qs_url=dead, gateway_url=dead, dashboard_sample_s=0.05) as client:
        deadline = asyncio.get_running_loop().time() + 5
        body: dict = {"points": []}
        while len(body["points"]) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            body = (await client.get("/api/dashboard/series")).json()
        assert (body["sample_s"], body["history_s"], body["source"]) == (0.05, 3600, "memory")
        points = body["points"]
        assert len(points) >= 3
        # Neither service answers: every point says so, with gaps rather than zeros.
        assert points[0]["up"] == {"gateway": False, "query": False}
        assert (points[0]["requests_per_min"], points[0]["queue_depth"]) == (None, None)
        assert [p["t"] for p in points] == sorted(p["t"] for p in points)
        newer = (await client.get("/api/dashboard/series", params={"since": points[1]["t"]})).json()
        assert newer["points"] and all(p["t"] > points[1]["t"] for p in newer["points"])
        for bad in ("yesterday", "nan", "inf"):
            r = await client.get("/api/dashboard/series", params={"since": bad})
            assert r.status_code == 400, bad
            assert r.json()["reason_code"] == "BAD_REQUEST"


async def test_with_sampling_off_nothing_is_scraped_and_the_series_is_empty() -> None:
    from .conftest import app_client

    async with app_client(dashboard_sample_s=0) as client:
        await asyncio.sleep(0.1)
        body = (await client.get("/api/dashboard/series")).json()
    assert (body["sample_s"], body["points"]) == (0, [])

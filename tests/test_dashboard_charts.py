"""The dashboard's last hour against the three real services: the BFF's sampler turns real traffic into points
(docs/bff.md, Dashboard), replicas on one real redis-server share one history, and the page draws the charts
in a real Chromium under the BFF's CSP, with no serious accessibility violation (axe-core).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_core import GatewayMetric, total
from cairn_testing import RedisServer, ServerProcess, start_redis, start_server, wait_for
from redis import Redis as SyncRedis

from .axe import assert_no_serious_violations
from .conftest import Stack, start_stack
from .test_browser import ARTIFACTS, HANDBOOK, chromium_page

pytestmark = [pytest.mark.slow]
SAMPLE_S = 0.5
QUESTIONS = [
    "How many days of paid leave do employees get?",
    "When must leave requests reach the manager?",
    "Who arranges cover for customer support shifts?",
]

# No passage matches: QS answers with search results, a NO_CONTEXT fallback.
NO_CONTEXT = "zyxwv qwerty plugh xyzzy"


def _series(url: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{url}/api/dashboard/series", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _gateway_requests(stack: Stack) -> float:
    text = httpx.get(f"{stack.gateway.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(total(GatewayMetric.REQUESTS) + "{")
    )


def _requests_in(points: list[dict[str, Any]]) -> float:
    """Requests the points account for: each point's rate times its interval."""
    return sum(sum((p["requests_per_min"] or {}).values()) * p["interval_s"] / 60 for p in points)


def _ask(bff_url: str, question: str) -> None:
    with httpx.stream(
        "POST", f"{bff_url}/api/chat", json={"query": question, "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200
        r.read()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(
        tmp_path_factory.mktemp("charts"), {"BFF_DASHBOARD_SAMPLE_S": str(SAMPLE_S)}, toy_delay_ms=20
    )
    doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
    assert httpx.post(f"{s.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
    yield s
    s.stop()


def test_the_sampler_turns_the_gateways_traffic_into_points(stack: Stack) -> None:
    # A quiet moment: what the points account for so far, against the gateway's own counter.
    wait_for(lambda: _series(stack.bff.url)["points"], "a first point", 20, 0.1)
    time.sleep(2 * SAMPLE_S)
    quiet_points, quiet_gateway = _series(stack.bff.url)["points"], _gateway_requests(stack)
    start = quiet_points[-1]["t"]
    for q in QUESTIONS:
        _ask(stack.bff.url, q)
    end_gateway = _gateway_requests(stack)
    assert end_gateway - quiet_gateway >= len(QUESTIONS)

    def caught_up() -> list[dict[str, Any]] | None:
        new = _series(stack.bff.url, since=start)["points"]
        return new if _requests_in(new) >= end_gateway - quiet_gateway - 0.01 else None

    new = wait_for(caught_up, "the points to account for the new requests", 20, 0.1)
    # Every request the gateway counted is in the points, once (rates are rounded to 4 digits).
    assert _requests_in(new) == pytest.approx(end_gateway - quiet_gateway, abs=0.05)
    busy = [p for p in new if p["ttft_p50_s"] is not None]
    assert busy, new
    assert all(0 < p["ttft_p50_s"] <= p["ttft_p95_s"] < 10 for p in busy)
    assert any((p["tokens_per_s"] or 0) > 0 for p in new)
    assert all(p["up"] == {"gateway": True, "query": True} and p["queue_depth"] == 0 for p in new)
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(new)]
    assert all(SAMPLE_S * 0.5 < g < SAMPLE_S * 4 for g in gaps), gaps


@pytest.mark.browser
def test_the_dashboard_draws_its_charts_under_the_csp_and_passes_axe(stack: Stack) -> None:
    from playwright.sync_api import expect

    for q in [*QUESTIONS[:2], NO_CONTEXT]:
        _ask(stack.bff.url, q)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(1280, 1000) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{stack.bff.url}/dashboard")
        for chart in ("ttft", "tps", "requests", "fallbacks", "queue"):
            expect(page.locator(f"#chart-{chart} canvas")).to_have_count(1, timeout=15_000)
        # More points arrive while the page is open (it asks for what is newer each sample).
        requests = page.locator("#chart-requests")
        first = requests.get_attribute("data-points")
        expect(requests).not_to_have_attribute("data-points", first or "", timeout=10_000)
        # The canvases hold drawn lines, not only a blank plot: count pixels in the series' colours.
        drawn = page.evaluate(
            """() => [...document.querySelectorAll('.chart canvas')].map((c) => {
                 const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let n = 0;
                 for (let i = 0; i < px.length; i += 4) {
                   if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) n++;
                 }
                 return n;
               })"""
        )
        assert len(drawn) == 5 and all(n > 50 for n in drawn), drawn
        expect(page.locator("#chart-requests-now")).to_contain_text("ok")
        expect(page.locator("#chart-requests .u-legend")).to_contain_text("ok")
        expect(page.locator("#chart-fallbacks .u-legend")).to_contain_text("NO_CONTEXT")
        # The cards of totals are still there, with the models' manifests.
        expect(page.locator("#requests")).not_to_have_text("–")
        expect(page.locator("#models-table")).to_contain_text("no model weights")
        page.screenshot(path=str(ARTIFACTS / "dashboard-charts.png"), full_page=True)
        assert not errors, errors
        assert_no_serious_violations(page)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    srv = start_redis()
    yield srv
    srv.stop()


def test_bff_replicas_share_one_history_in_redis(tmp_path: Path, redis: RedisServer) -> None:
    """Two BFFs on one Redis: one history, one point per interval (not one per replica), capped at the
    history's length; Redis gone, each serves its own points instead of failing."""
    env = {
        "CAIRN_REDIS_URL": redis.url,
        "BFF_DASHBOARD_SAMPLE_S": str(SAMPLE_S),
        "BFF_DASHBOARD_HISTORY_S": str(SAMPLE_S * 8),
    }
    s = start_stack(tmp_path, env)
    bff2: ServerProcess | None = None
    try:
        bff2 = start_server("bff", ["cairn_bff"], env=dict(s.bff.env), health_path="/readyz")
        time.sleep(SAMPLE_S * 12)  # long enough to fill the history and to begin dropping its oldest
        one, two = _series(s.bff.url), _series(bff2.url)
        assert (one["source"], two["source"]) == ("redis", "redis")
        shared = {p["t"] for p in one["points"]} & {p["t"] for p in two["points"]}
        assert len(shared) >= len(one["points"]) - 1  # the same points (one may have arrived in between)
        stored = SyncRedis.from_url(redis.url).llen("cairn:bff:dashboard:points")
        assert stored == 8  # capped: BFF_DASHBOARD_HISTORY_S / BFF_DASHBOARD_SAMPLE_S
        ts = [p["t"] for p in one["points"]]
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        # Two replicas sampling: still one point per interval (the lease), never two close together.
        assert all(g > SAMPLE_S * 0.6 for g in gaps), gaps

        redis.stop()
        fallback = _series(s.bff.url)
        assert fallback["source"] == "memory" and fallback["points"]
    finally:
        if bff2 is not None:
            bff2.stop()
        s.stop()
    assert "Traceback" not in s.bff.log_text()

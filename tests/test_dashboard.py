"""The BFF's dashboard reads the real services' /metrics: a metric renamed on one side only shows up here as a
zero or a missing number, not silently in production."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .conftest import Stack, start_stack

DOC = {"id": "tide", "title": "Tide log", "text": "The keeper logs the tide every four hours."}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(tmp_path_factory.mktemp("dashboard"))
    yield s
    s.stop()


def test_the_dashboard_summarises_what_the_real_services_counted(stack: Stack) -> None:
    api = f"{stack.bff.url}/api"
    assert httpx.post(f"{api}/documents", json=DOC, timeout=30).status_code in (200, 201)
    answer = httpx.post(f"{api}/chat", json={"query": "How often is the tide logged?"}, timeout=30)
    assert answer.json()["status"] == "ok", answer.text
    streamed = httpx.post(f"{api}/chat", json={"query": "Who logs the tide?", "stream": True}, timeout=30)
    assert streamed.status_code == 200 and "event: done" in streamed.text
    nothing = httpx.post(f"{api}/chat", json={"query": "zyxwv qwerty plugh"}, timeout=30).json()
    assert nothing["reason_code"] == "NO_CONTEXT"

    d = httpx.get(f"{api}/dashboard", timeout=30).json()
    gw, qs, bff = d["gateway"], d["query"], d["bff"]
    assert gw["up"] is True and qs["up"] is True
    # Two generations reached the gateway (the question without context never did), one of them streamed.
    assert gw["requests_total"] == 2 and gw["requests_by_status"] == {"ok": 2}, gw
    assert gw["time_to_first_token_s"]["count"] == 1 and gw["latency_s"]["count"] == 2
    assert gw["tokens"]["completion"] > 0 and gw["provider_up"] == {"toy": 1.0}
    assert gw["queue_depth"] == {"toy": 0.0} and gw["circuit_state"] == {"toy": 0.0}
    assert qs["fallbacks_by_reason"] == {"NO_CONTEXT": 1.0} and qs["requests_total"] >= 3
    assert qs["retrieval_latency_s"]["count"] >= 3 and qs["cache"]
    assert bff["requests_by_status"] and bff["streams_by_outcome"] == {"complete": 1.0}

"""Several model servers behind one alias (`LLM_UPSTREAMS`): two real fake servers and a real gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from cairn_gateway.providers.router import public_url
from cairn_testing import ServerProcess, start_fake_openai

from .conftest import sse, start_gateway, stats


def _upstreams(*fakes: ServerProcess, key: str | None = None) -> str:
    return json.dumps([{"base_url": f"{f.url}/v1", "model": "fake-model", "api_key": key} for f in fakes])


def _deployments(gw: ServerProcess) -> dict[str, dict]:
    models = httpx.get(f"{gw.url}/v1/models").json()["data"]
    entry = next(m for m in models if m["id"] == "fake-model")
    assert entry["provider"] == "router" and entry["routing"] == "least_in_flight"
    return {d["base_url"]: d for d in entry["deployments"]}


@pytest.fixture(scope="module")
def good() -> Iterator[ServerProcess]:
    srv = start_fake_openai()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def broken() -> Iterator[ServerProcess]:
    srv = start_fake_openai("fake-openai", "--fail-all", "503")
    yield srv
    srv.stop()


def test_a_server_that_answers_503_loses_no_request_and_its_circuit_opens(
    good: ServerProcess, broken: ServerProcess
) -> None:
    gw = start_gateway(
        None,
        LLM_PROVIDER="openai_compat",
        LLM_UPSTREAMS=_upstreams(broken, good, key="sk-very-secret"),
        LLM_CIRCUIT_FAILURES="3",
        LLM_CIRCUIT_RESET_MS="60000",
    )
    try:
        before_good, before_broken = stats(good)["requests"], stats(broken)["requests"]
        with httpx.Client(timeout=10) as client:
            for i in range(40):
                body = {"prompt": f"question {i} [[tokens:3]]", "stream": i % 2 == 1}
                r = client.post(f"{gw.url}/v1/generate", json=body)
                assert r.status_code == 200, r.text
                status = sse(r.text)[-1][1]["status"] if body["stream"] else r.json()["status"]
                assert status == "ok"
        # One retry layer: the broken server saw exactly the calls that opened its breaker, not 3 per call.
        assert stats(broken)["requests"] - before_broken == 3
        assert stats(good)["requests"] - before_good == 40
        raw = httpx.get(f"{gw.url}/v1/models").text
        assert "sk-very-secret" not in raw
        deps = _deployments(gw)
        bad, ok = deps[f"{broken.url}/v1"], deps[f"{good.url}/v1"]
        assert bad["circuit"] == "open" and bad["failures"] == 3 and "503" in bad["last_error"]
        assert ok["circuit"] == "closed" and ok["in_flight"] == 0 and ok["last_error"] is None
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert (
            f'cairn_gateway_upstream_circuit_state{{model="fake-model",upstream="{broken.url}/v1"}} 2.0'
            in metrics
        )
    finally:
        gw.stop()


async def test_requests_go_to_the_server_with_fewer_in_flight(good: ServerProcess) -> None:
    slow = start_fake_openai("fake-openai", "--delay-ms", "1000")
    gw = start_gateway(None, LLM_PROVIDER="openai_compat", LLM_UPSTREAMS=_upstreams(slow, good))
    try:
        before_slow, before_good = stats(slow)["requests"], stats(good)["requests"]

        async def worker(client: httpx.AsyncClient) -> None:
            for _ in range(10):
                r = await client.post(f"{gw.url}/v1/generate", json={"prompt": "[[tokens:2]]"})
                assert r.status_code == 200 and r.json()["status"] == "ok"

        async with httpx.AsyncClient(timeout=20) as client:
            await asyncio.gather(*(worker(client) for _ in range(4)))
        to_slow = stats(slow)["requests"] - before_slow
        to_good = stats(good)["requests"] - before_good
        assert to_slow + to_good == 40
        assert to_slow <= 10, (to_slow, to_good)  # an even split would be 20
    finally:
        gw.stop()
        slow.stop()


def test_a_stream_that_broke_after_its_first_token_is_not_retried(good: ServerProcess) -> None:
    second = start_fake_openai()
    gw = start_gateway(None, LLM_PROVIDER="openai_compat", LLM_UPSTREAMS=_upstreams(good, second))
    try:
        before = stats(good)["requests"] + stats(second)["requests"]
        r = httpx.post(
            f"{gw.url}/v1/generate", json={"prompt": "[[tokens:6]] [[disconnect_mid]]", "stream": True}
        )
        events = sse(r.text)
        assert [e for e, _ in events][-2:] == ["error", "done"]
        assert events[-1][1]["status"] == "error"
        assert stats(good)["requests"] + stats(second)["requests"] - before == 1  # never a second try
    finally:
        gw.stop()
        second.stop()


def test_shown_urls_carry_no_credentials() -> None:
    assert public_url("https://user:pw@llm.example:8443/v1?api-key=k") == "https://llm.example:8443/v1"
    assert public_url("http://127.0.0.1:8090/v1") == "http://127.0.0.1:8090/v1"


def test_weight_scales_the_in_flight_count() -> None:
    from cairn_gateway.providers.router import RouterProvider
    from cairn_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        provider="openai_compat",
        model="m",
        upstreams=json.dumps(
            [{"base_url": "http://big.test/v1", "weight": 2}, {"base_url": "http://small.test/v1"}]
        ),
    )
    spec = settings.model_specs[0]
    assert spec.provider == "router" and spec.alias == "m" and spec.params["max_concurrency"] == 4
    router = RouterProvider(spec, settings, None)  # type: ignore[arg-type]  # no call is made
    picked = []
    for _ in range(6):  # requests that all stay in flight
        dep = router.pick(set())
        assert dep is not None
        dep.in_flight += 1
        picked.append(dep.url)
    assert picked.count("http://big.test/v1") == 4 and picked.count("http://small.test/v1") == 2
    big = router.deployments[0]
    assert router.pick({big}) is router.deployments[1]  # a retry prefers the server not yet tried

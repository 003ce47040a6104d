"""Circuit breaker, admission control and the fallback chain, each on its own real gateway process."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from cairn_testing import ServerProcess
from prometheus_client.parser import text_string_to_metric_families

from .conftest import sse, start_gateway, stats


def test_500_storm_opens_the_circuit_then_it_recovers(fake: ServerProcess) -> None:
    gw = start_gateway(fake, LLM_CIRCUIT_FAILURES="3", LLM_CIRCUIT_RESET_MS="700", LLM_RETRIES="0")
    try:
        for _ in range(3):
            r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[fail_always]]"})
            assert r.json()["reason_code"] == "PROVIDER_ERROR"
        before = stats(fake)["requests"]
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[fail_always]]"})
        assert r.status_code == 503 and r.json()["reason_code"] == "CIRCUIT_OPEN"
        assert int(r.headers["retry-after"]) >= 1
        assert stats(fake)["requests"] == before  # open circuit: the upstream is not called at all
        assert 'cairn_gateway_circuit_state{model="fake-model"} 2.0' in httpx.get(f"{gw.url}/metrics").text
        time.sleep(0.8)
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[tokens:2]]"})  # the half-open probe
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[tokens:2]]"})
        assert r.status_code == 200
        assert 'cairn_gateway_circuit_state{model="fake-model"} 0.0' in httpx.get(f"{gw.url}/metrics").text
    finally:
        gw.stop()


def test_a_probe_that_fails_for_a_reason_of_its_own_frees_the_half_open_circuit(fake: ServerProcess) -> None:
    gw = start_gateway(fake, LLM_CIRCUIT_FAILURES="1", LLM_CIRCUIT_RESET_MS="300", LLM_RETRIES="0")
    try:
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[fail_always]]"})
        assert r.json()["reason_code"] == "PROVIDER_ERROR"
        time.sleep(0.4)
        # The half-open probe fails, but not for the provider's health: an unreadable answer.
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[malformed]]"})
        assert r.json()["reason_code"] == "MALFORMED_OUTPUT", r.text
        # No verdict on the provider, so the next call may probe; it used to stay refused for good.
        r = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "[[tokens:2]]"})
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    finally:
        gw.stop()


async def test_queue_overflow_fails_fast_with_retry_after(fake: ServerProcess) -> None:
    gw = start_gateway(fake, LLM_MAX_CONCURRENCY="1", LLM_QUEUE_SIZE="1")
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            body = {"prompt": "[[tokens:10]] [[delay_ms:80]]", "stream": True}
            results = await asyncio.gather(
                *[client.post(f"{gw.url}/v1/generate", json=body) for _ in range(5)]
            )
        codes = sorted(r.status_code for r in results)
        assert codes.count(200) == 2, codes  # one running, one queued
        rejected = [r for r in results if r.status_code == 429]
        assert len(rejected) == 3
        for r in rejected:
            assert r.json()["reason_code"] == "QUEUE_FULL" and r.headers["retry-after"]
        for r in results:
            if r.status_code == 200:
                assert sse(r.text)[-1][1]["status"] == "ok"
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def with_fallback(fake: ServerProcess):
    gw = start_gateway(fake, LLM_FALLBACK_PROVIDERS="toy", LLM_RETRIES="0")
    yield gw
    gw.stop()


def test_fallback_chain_reports_what_failed(with_fallback: ServerProcess) -> None:
    r = httpx.post(f"{with_fallback.url}/v1/generate", json={"prompt": "[[fail_always]]"})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "fallback"
    assert body["provider"] == "toy" and body["reason_code"] == "PROVIDER_ERROR" and body["text"]
    events = sse(
        httpx.post(
            f"{with_fallback.url}/v1/generate", json={"prompt": "[[fail_always]]", "stream": True}
        ).text
    )
    assert events[0][1]["provider"] == "toy"
    assert events[-1][1]["status"] == "fallback" and events[-1][1]["reason_code"] == "PROVIDER_ERROR"


def test_fallback_is_never_used_after_the_first_byte(with_fallback: ServerProcess) -> None:
    rid = uuid.uuid4().hex
    events = sse(
        httpx.post(
            f"{with_fallback.url}/v1/generate",
            headers={"X-Request-ID": rid},
            json={"prompt": "[[disconnect_mid]] [[tokens:6]]", "stream": True},
        ).text
    )
    assert {d.get("provider") for e, d in events if e == "meta"} == {"openai_compat"}
    assert events[-1][1]["status"] == "error"


def _requests_counted(gw: ServerProcess) -> dict[tuple[str, ...], float]:
    """cairn_gateway_requests by (endpoint, status, reason_code, provider)."""
    family = next(
        f
        for f in text_string_to_metric_families(httpx.get(f"{gw.url}/metrics").text)
        if f.name == "cairn_gateway_requests"
    )
    keys = ("endpoint", "status", "reason_code", "provider")
    return {tuple(s.labels[k] for k in keys): s.value for s in family.samples if s.name.endswith("_total")}


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_an_openai_answer_from_the_fallback_chain_is_counted_as_a_fallback(
    with_fallback: ServerProcess, stream: bool
) -> None:
    key = ("chat_completions", "fallback", "PROVIDER_ERROR", "toy")
    before = _requests_counted(with_fallback).get(key, 0)
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "[[fail_always]]"}],
        "stream": stream,
    }
    r = httpx.post(f"{with_fallback.url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    # The streamed chat completion used to be counted as an `ok` answer of the toy model.
    assert _requests_counted(with_fallback).get(key, 0) == before + 1

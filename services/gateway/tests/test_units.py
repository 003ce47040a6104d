"""Unit tests of single pieces: the openai_compat client (respx), circuit breaker, admission, toy provider."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx
from cairn_core import CairnError, ChatMessage, ReasonCode, StopReason
from cairn_gateway.admission import Admission
from cairn_gateway.circuit import CircuitBreaker, CircuitState
from cairn_gateway.providers.base import ProviderError, ProviderRequest
from cairn_gateway.providers.openai_compat import OpenAICompatProvider
from cairn_gateway.providers.toy import ToyEmbedder, ToyProvider
from cairn_gateway.settings import GatewaySettings, ModelSpec

BASE = "http://upstream.test/v1"


def _provider(**kw) -> tuple[OpenAICompatProvider, httpx.AsyncClient]:
    settings = GatewaySettings(provider="openai_compat", base_url=BASE, model="m1", retry_max_wait_ms=0, **kw)
    http = httpx.AsyncClient()
    return OpenAICompatProvider(settings.model_specs[0], settings, http), http


def _req(**kw) -> ProviderRequest:
    return ProviderRequest(
        messages=[ChatMessage(role="system", content="s"), ChatMessage(role="user", content="q")],
        max_tokens=kw.pop("max_tokens", 33),
        temperature=0.1,
        **kw,
    )


@respx.mock
async def test_payload_carries_model_messages_and_limits() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
        )
    )
    provider, http = _provider(api_key="sekrit")
    async with http:
        result = await provider.generate(_req(stop=["\n"], seed=4, json_schema={"type": "object"}))
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "m1" and sent["max_tokens"] == 33 and sent["stream"] is False
    assert sent["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert sent["stop"] == ["\n"] and sent["seed"] == 4
    assert sent["response_format"]["type"] == "json_schema"
    assert route.calls.last.request.headers["authorization"] == "Bearer sekrit"
    assert (
        result.text == "hi" and result.finish_reason is StopReason.LENGTH and result.usage.total_tokens == 4
    )


@respx.mock
async def test_stream_payload_asks_for_usage() -> None:
    body = (
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":2,'
        b'"completion_tokens":1}}\n\ndata: [DONE]\n\n'
    )
    route = respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    provider, http = _provider()
    async with http:
        chunks = [c async for c in provider.stream(_req())]
    assert json.loads(route.calls.last.request.content)["stream_options"] == {"include_usage": True}
    assert [c.text for c in chunks if c.text] == ["a"] and chunks[-1].usage.completion_tokens == 1


@respx.mock
async def test_retries_honour_retry_after_and_stop_at_the_limit() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "0"}),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}),
        ]
    )
    provider, http = _provider(retries=2)
    async with http:
        assert (await provider.generate(_req())).text == "ok"
    assert route.call_count == 3


@respx.mock
async def test_client_errors_are_not_retried() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        return_value=httpx.Response(400, json={"error": "bad"})
    )
    provider, http = _provider(retries=3)
    async with http:
        with pytest.raises(ProviderError) as err:
            await provider.generate(_req())
    assert route.call_count == 1 and err.value.reason_code is ReasonCode.PROVIDER_ERROR


@respx.mock
async def test_connect_error_is_unavailable_after_retries() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    provider, http = _provider(retries=1)
    async with http:
        with pytest.raises(ProviderError) as err:
            await provider.generate(_req())
    assert route.call_count == 2 and err.value.reason_code is ReasonCode.PROVIDER_UNAVAILABLE


def test_circuit_breaker_opens_probes_and_closes() -> None:
    cb = CircuitBreaker("m", failure_threshold=2, reset_after_s=0.05)
    cb.before_call()
    cb.failure()
    cb.before_call()
    cb.failure()
    assert cb.state is CircuitState.OPEN
    with pytest.raises(CairnError) as err:
        cb.before_call()
    assert err.value.reason_code is ReasonCode.CIRCUIT_OPEN
    import time

    time.sleep(0.06)
    assert cb.state is CircuitState.HALF_OPEN
    cb.before_call()  # the one probe
    with pytest.raises(CairnError):
        cb.before_call()  # a second caller while the probe runs
    cb.success()
    assert cb.state is CircuitState.CLOSED


async def test_admission_queues_then_rejects() -> None:
    adm = Admission(max_concurrency=1, queue_size=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with adm.slot():
            await release.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    second = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert adm.in_flight == 1 and adm.waiting == 1
    with pytest.raises(CairnError) as err:
        async with adm.slot():
            pass
    assert err.value.reason_code is ReasonCode.QUEUE_FULL and err.value.retry_after
    release.set()
    await asyncio.gather(first, second)
    assert adm.in_flight == 0 and adm.waiting == 0


async def test_toy_is_deterministic_and_honours_limits() -> None:
    toy = ToyProvider(ModelSpec(alias="toy", provider="toy"), GatewaySettings(provider="toy"))
    a = await toy.generate(_req(seed=1))
    assert a.text == (await toy.generate(_req(seed=1))).text
    assert a.text != (await toy.generate(_req(seed=2))).text
    short = await toy.generate(_req(max_tokens=3))
    assert short.finish_reason is StopReason.LENGTH and short.usage.completion_tokens == 3
    stopped = await toy.generate(_req(stop=["q."]))
    assert stopped.finish_reason is StopReason.STOP and "q." not in stopped.text
    streamed = [c async for c in toy.stream(_req(seed=1))]
    assert "".join(c.text for c in streamed) == a.text


async def test_toy_embedder_ranks_lexical_overlap() -> None:
    emb = ToyEmbedder()
    (q, near, far), _ = await emb.embed(
        ["stone cairn trail", "a cairn of stone on the trail", "stock markets"]
    )
    dot = lambda x, y: sum(i * j for i, j in zip(x, y, strict=True))  # noqa: E731
    assert dot(q, near) > dot(q, far)

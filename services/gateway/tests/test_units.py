"""Unit tests of single pieces: the openai_compat client (aioresponses), admission, toy provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
import yarl
from aioresponses import aioresponses
from cairn_core import (
    CairnError,
    ChatMessage,
    ReasonCode,
    StopReason,
    make_aiohttp_session,
)
from cairn_gateway.admission import Admission
from cairn_gateway.errors import ProviderError
from cairn_gateway.providers.base import ProviderRequest
from cairn_gateway.providers.openai_compat import OpenAICompatProvider
from cairn_gateway.providers.toy import ToyEmbedder, ToyProvider
from cairn_gateway.settings import GatewaySettings, ModelSpec
from cairn_testing import free_port

BASE = "http://upstream.test/v1"
URL = f"{BASE}/chat/completions"


@pytest.fixture
def upstream() -> Iterator[aioresponses]:
    with aioresponses() as mocked:
        yield mocked


def _provider(**kw) -> tuple[OpenAICompatProvider, aiohttp.ClientSession]:
    settings = GatewaySettings(provider="openai_compat", base_url=BASE, model="m1", retry_max_wait_ms=0, **kw)
    http = make_aiohttp_session()
    return OpenAICompatProvider(settings.model_specs[0], settings, http), http


def _req(**kw) -> ProviderRequest:
    return ProviderRequest(
        messages=[ChatMessage(role="system", content="s"), ChatMessage(role="user", content="q")],
        max_tokens=kw.pop("max_tokens", 33),
        temperature=0.1,
        **kw,
    )


def _sent(upstream: aioresponses) -> list[tuple[dict, dict]]:
    """The JSON bodies and headers of every call made to the upstream, in order."""
    calls = upstream.requests[("POST", yarl.URL(URL))]
    return [(json.loads(c.kwargs["data"]), c.kwargs["headers"]) for c in calls]


async def test_payload_carries_model_messages_and_limits(upstream: aioresponses) -> None:
    upstream.post(
        URL,
        payload={
            "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        },
    )
    provider, http = _provider(api_key="sekrit")
    async with http:
        result = await provider.generate(_req(stop=["\n"], seed=4, json_schema={"type": "object"}))
    [(sent, headers)] = _sent(upstream)
    assert sent["model"] == "m1" and sent["max_tokens"] == 33 and sent["stream"] is False
    assert sent["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert sent["stop"] == ["\n"] and sent["seed"] == 4
    assert sent["response_format"]["type"] == "json_schema"
    assert headers["Authorization"] == "Bearer sekrit" and headers["Content-Type"] == "application/json"
    assert (
        result.text == "hi" and result.finish_reason is StopReason.LENGTH and result.usage.total_tokens == 4
    )


async def test_stream_payload_asks_for_usage(upstream: aioresponses) -> None:
    body = (
        b'data: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\n: a comment\ndata: {"choices":[],'
        b'"usage":{"prompt_tokens":2,\ndata: "completion_tokens":1}}\n\ndata: [DONE]\n\n'
    )
    upstream.post(URL, body=body, content_type="text/event-stream")
    provider, http = _provider()
    async with http:
        chunks = [c async for c in provider.stream(_req())]
    [(sent, _)] = _sent(upstream)
    assert sent["stream_options"] == {"include_usage": True}
    # CRLF line ends, a comment line and a data field split over two lines are all read as SSE says.
    assert [c.text for c in chunks if c.text] == ["a"] and chunks[-1].usage.completion_tokens == 1


async def test_a_200_that_is_not_a_stream_is_a_provider_error(upstream: aioresponses) -> None:
    upstream.post(URL, payload={"error": {"message": "model not found"}})
    provider, http = _provider()
    async with http:
        with pytest.raises(ProviderError) as err:
            [c async for c in provider.stream(_req())]
    assert err.value.reason_code is ReasonCode.PROVIDER_ERROR and "model not found" in err.value.message


async def test_retries_honour_retry_after_and_stop_at_the_limit(upstream: aioresponses) -> None:
    upstream.post(URL, status=503, headers={"Retry-After": "0"})
    upstream.post(URL, status=429, headers={"Retry-After": "0"})
    upstream.post(URL, payload={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
    provider, http = _provider(retries=2)
    async with http:
        assert (await provider.generate(_req())).text == "ok"
    assert len(_sent(upstream)) == 3


async def test_client_errors_are_not_retried(upstream: aioresponses) -> None:
    upstream.post(URL, status=400, payload={"error": "bad"}, repeat=True)
    provider, http = _provider(retries=3)
    async with http:
        with pytest.raises(ProviderError) as err:
            await provider.generate(_req())
    assert len(_sent(upstream)) == 1 and err.value.reason_code is ReasonCode.PROVIDER_ERROR


async def test_connect_error_is_unavailable_after_retries() -> None:
    # A real refused connection: a port nothing listens on.
    settings = GatewaySettings(
        provider="openai_compat",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        retries=1,
        retry_max_wait_ms=0,
    )
    async with make_aiohttp_session() as http:
        provider = OpenAICompatProvider(settings.model_specs[0], settings, http)
        with pytest.raises(ProviderError) as err:
            await provider.generate(_req())
    assert err.value.reason_code is ReasonCode.PROVIDER_UNAVAILABLE


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


@pytest.mark.parametrize("retries", [2, 0])
async def test_retries_stop_at_the_limit_with_the_last_failure(upstream: aioresponses, retries: int) -> None:
    upstream.post(URL, status=503, headers={"Retry-After": "0"}, repeat=True)
    provider, http = _provider(retries=retries)
    async with http:
        with pytest.raises(ProviderError) as err:
            await provider.generate(_req())
    # One first call and exactly `retries` more, whichever layer runs them.
    assert len(_sent(upstream)) == 1 + retries and err.value.reason_code is ReasonCode.PROVIDER_UNAVAILABLE


@pytest.mark.parametrize(
    "dropped",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(None, "Can not write request body"),
        aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
    ],
)
async def test_a_connection_dropped_before_the_answer_is_retried(
    upstream: aioresponses, dropped: Exception
) -> None:
    # A pooled keep-alive connection the server closed just as the request went out: nothing was answered.
    upstream.post(URL, exception=dropped)
    upstream.post(URL, payload={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
    provider, http = _provider(retries=1)
    async with http:
        assert (await provider.generate(_req())).text == "ok"


def test_sources_quote_is_whole_sentences_without_heading_marks() -> None:
    from cairn_gateway.providers.sources import quote

    assert quote("# Handbook\nLeave is 25 days. Ask early. Third.") == "Leave is 25 days. Ask early."
    assert quote("# Handbook Leave is 25 days. Ask early.") == "Handbook Leave is 25 days. Ask early."
    assert quote("One sentence only") == "One sentence only"

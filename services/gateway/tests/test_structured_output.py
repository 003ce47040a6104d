"""Structured output on `openai_compat` (aioresponses): an upstream that refuses a `response_format` is asked again
at once in the next mode (json_schema, json_object, prompt), which is learnt once per upstream and logged once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yarl
from aioresponses import CallbackResult, aioresponses
from cairn_core import ChatMessage, ReasonCode, make_aiohttp_session
from cairn_gateway.citations import json_schema
from cairn_gateway.providers.base import UNHEALTHY, ProviderRequest
from cairn_gateway.providers.openai_compat import OpenAICompatProvider
from cairn_gateway.providers.structured_output import FormatRefused, Mode, refusal
from cairn_gateway.settings import GatewaySettings
from cairn_testing.imitations import LLAMA_CPP_PYTHON_REFUSAL, XGRAMMAR_REFUSAL
from structlog.testing import capture_logs

BASE = "http://upstream.test/v1"
URL = f"{BASE}/chat/completions"
SCHEMA = json_schema(["doc:0", "doc:1"])
# What llama-cpp-python's server answers a json_schema request: a 500 whose message is the validation error.
LLAMA_CPP_500 = {
    "error": {
        "message": LLAMA_CPP_PYTHON_REFUSAL.replace("{type}", "json_schema"),
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}
ANSWER = {
    "choices": [{"message": {"content": '{"answer": "a", "citations": ["doc:0"]}'}, "finish_reason": "stop"}]
}


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
        messages=[
            ChatMessage(role="system", content="Sources: [doc:0]"),
            ChatMessage(role="user", content="q"),
        ],
        max_tokens=20,
        temperature=0,
        json_schema=kw.pop("json_schema", SCHEMA),
        **kw,
    )


def _formats(upstream: aioresponses) -> list[dict | None]:
    """The `response_format` of every call made to the upstream, in order (None where there was none)."""
    calls = upstream.requests.get(("POST", yarl.URL(URL)), [])
    return [json.loads(c.kwargs["data"]).get("response_format") for c in calls]


def _mode_lines(logs: list[dict]) -> list[dict]:
    return [line for line in logs if line["event"] == "structured_output_mode"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, json.dumps(LLAMA_CPP_500)),  # llama-cpp-python's server
        (400, json.dumps({"error": {"message": XGRAMMAR_REFUSAL, "type": "BadRequestError", "code": 400}})),
        (422, '{"detail": [{"loc": ["body", "response_format", "type"], "msg": "unexpected value"}]}'),
        (400, '{"error": "json_object is not supported by this model"}'),
    ],
)
def test_refusals_of_a_response_format_are_recognised(status: int, body: str) -> None:
    assert refusal(status, body)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, '{"error": {"message": "CUDA error: out of memory"}}'),  # a real fault: retried, counted
        (503, '{"error": {"message": "loading model; response_format later"}}'),  # busy, whatever it says
        (400, '{"error": {"message": "messages: field required"}}'),  # the request's own fault
    ],
)
def test_other_failures_are_not_refusals(status: int, body: str) -> None:
    assert not refusal(status, body)


async def test_a_refused_json_schema_is_asked_again_as_json_object_and_learnt(upstream: aioresponses) -> None:
    upstream.post(URL, status=500, payload=LLAMA_CPP_500)
    upstream.post(URL, payload=ANSWER, repeat=True)
    provider, http = _provider(retries=2)
    async with http:
        with capture_logs() as logs:
            first = await provider.generate(_req())
            second = await provider.generate(_req())
    assert first.text == second.text == ANSWER["choices"][0]["message"]["content"]
    # The 500 was not retried as it was (retries=2 would have sent json_schema three times): the next call is
    # json_object, holding the schema (llama-cpp-python makes a grammar of it), and so is the next request's.
    assert _formats(upstream) == [
        {"type": "json_schema", "json_schema": {"name": "grounded_answer", "schema": SCHEMA, "strict": True}},
        {"type": "json_object", "schema": SCHEMA},
        {"type": "json_object", "schema": SCHEMA},
    ]
    [line] = _mode_lines(logs)
    assert line["refused"] == "json_schema" and line["mode"] == "json_object" and line["status"] == 500
    assert line["upstream"] == BASE and line["model"] == "m1"
    assert provider.info()["structured_output"] == "json_object"


async def test_a_server_that_takes_no_format_is_asked_by_the_prompt_alone(upstream: aioresponses) -> None:
    refused = {"error": {"message": "response_format is not supported"}}
    upstream.post(URL, status=400, payload=refused)
    upstream.post(URL, status=422, payload=refused)
    upstream.post(URL, payload=ANSWER, repeat=True)
    provider, http = _provider()
    async with http:
        with capture_logs() as logs:
            await provider.generate(_req())
            await provider.generate(_req())
    assert [f and f["type"] for f in _formats(upstream)] == ["json_schema", "json_object", None, None]
    assert [(x["refused"], x["mode"]) for x in _mode_lines(logs)] == [
        ("json_schema", "json_object"),
        ("json_object", "prompt"),
    ]


async def test_requests_refused_together_step_down_once(upstream: aioresponses) -> None:
    both_sent = asyncio.Barrier(2)

    async def answer(url: yarl.URL, **kwargs: Any) -> CallbackResult:
        if json.loads(kwargs["data"])["response_format"]["type"] == "json_object":
            return CallbackResult(payload=ANSWER)
        await both_sent.wait()  # two requests in flight in json_schema mode, refused together
        return CallbackResult(status=500, payload=LLAMA_CPP_500)

    upstream.post(URL, callback=answer, repeat=True)
    provider, http = _provider()
    async with http:
        with capture_logs() as logs:
            await asyncio.gather(provider.generate(_req()), provider.generate(_req()))
    assert [f and f["type"] for f in _formats(upstream)] == [
        "json_schema",
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert len(_mode_lines(logs)) == 1 and provider.structured.mode is Mode.JSON_OBJECT


async def test_a_streamed_request_learns_the_same_way(upstream: aioresponses) -> None:
    upstream.post(URL, status=500, payload=LLAMA_CPP_500)
    upstream.post(
        URL,
        body=b'data: {"choices":[{"delta":{"content":"{}"}}]}\n\ndata: [DONE]\n\n',
        content_type="text/event-stream",
    )
    provider, http = _provider()
    async with http:
        chunks = [c async for c in provider.stream(_req())]
    assert "".join(c.text for c in chunks) == "{}"
    assert [f and f["type"] for f in _formats(upstream)] == ["json_schema", "json_object"]


async def test_a_clients_own_refused_format_is_a_bad_request_not_a_provider_fault(
    upstream: aioresponses,
) -> None:
    upstream.post(URL, status=500, payload=LLAMA_CPP_500, repeat=True)
    provider, http = _provider(retries=2)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    async with http:
        with pytest.raises(FormatRefused) as err:
            await provider.generate(_req(json_schema=None, openai={"response_format": fmt}))
    assert _formats(upstream) == [fmt]  # sent once, as the client wrote it
    assert err.value.reason_code is ReasonCode.BAD_REQUEST and err.value.reason_code not in UNHEALTHY
    assert err.value.param == "response_format"
    assert provider.structured.mode is Mode.JSON_SCHEMA  # a client's format teaches nothing about ours


async def test_a_500_that_names_no_format_is_still_a_retried_provider_error(upstream: aioresponses) -> None:
    upstream.post(URL, status=500, payload={"error": {"message": "boom"}}, repeat=True)
    provider, http = _provider(retries=1)
    async with http:
        with pytest.raises(Exception) as err:
            await provider.generate(_req())
    assert [f and f["type"] for f in _formats(upstream)] == ["json_schema", "json_schema"]
    assert getattr(err.value, "reason_code", None) is ReasonCode.PROVIDER_ERROR
    assert provider.structured.mode is Mode.JSON_SCHEMA

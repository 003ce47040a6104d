"""The official `openai` SDK, unchanged, as a client of the gateway's OpenAI-compatible endpoints."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from cairn_testing import ServerProcess

from .conftest import start_gateway


@pytest.fixture
def client(gateway: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


async def test_sdk_non_stream(client: openai.AsyncOpenAI) -> None:
    async with client:
        out = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi [[tokens:3]]"}], max_tokens=10
        )
    assert out.choices[0].message.content == "tok0 tok1 tok2"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == 3


async def test_sdk_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    async with client:
        stream = await client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi [[tokens:4]]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
    assert text == "tok0 tok1 tok2 tok3" and finish == "stop"
    assert usage is not None and usage.completion_tokens == 4


async def test_sdk_sees_openai_shaped_errors(client: openai.AsyncOpenAI) -> None:
    async with client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}], max_tokens=100_000
            )
        assert bad.value.code == "TOKEN_LIMIT"
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.APIStatusError) as timeout:
            await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "[[slow_first:10]]"}]
            )
        assert timeout.value.status_code == 504


async def test_sdk_models_and_embeddings(client: openai.AsyncOpenAI) -> None:
    async with client:
        models = await client.models.list()
        assert "fake-model" in [m.id for m in models.data]
        emb = await client.embeddings.create(model="toy-hash-256", input=["a cat", "a dog"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 256


async def test_sdk_legacy_completions(client: openai.AsyncOpenAI) -> None:
    async with client:
        out = await client.completions.create(model="fake-model", prompt="Once [[tokens:3]]", max_tokens=10)
        assert out.object == "text_completion"
        assert out.choices[0].text == "tok0 tok1 tok2" and out.choices[0].finish_reason == "stop"
        assert out.usage is not None and out.usage.completion_tokens == 3
        stream = await client.completions.create(
            model="fake-model",
            prompt="Once [[tokens:4]]",
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].text
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
    assert text == "tok0 tok1 tok2 tok3" and finish == "stop"
    assert usage is not None and usage.completion_tokens == 4


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_sdk_tool_calls(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": "weather? [[tool_call]]"}]
    async with client:
        out = await client.chat.completions.create(model="fake-model", messages=messages, tools=TOOLS)
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
        stream = await client.chat.completions.create(
            model="fake-model",
            messages=messages,
            tools=TOOLS,
            stream=True,
        )
        args, finish = "", None
        async for chunk in stream:
            if chunk.choices:
                for call in chunk.choices[0].delta.tool_calls or []:
                    args += (call.function and call.function.arguments) or ""
                finish = chunk.choices[0].finish_reason or finish
    assert args == '{"q": "cairn"}' and finish == "tool_calls"


@pytest.fixture(scope="module")
def toy_gateway() -> Iterator[ServerProcess]:
    srv = start_gateway(None)
    yield srv
    srv.stop()


async def test_sdk_against_toy_completions_and_refusals(toy_gateway: ServerProcess) -> None:
    async with openai.AsyncOpenAI(base_url=f"{toy_gateway.url}/v1", api_key="unused", max_retries=0) as toy:
        out = await toy.completions.create(model="fake-model", prompt="The cairn", max_tokens=4)
        assert out.choices[0].text.startswith("Toy answer") and out.choices[0].finish_reason == "length"
        stream = await toy.completions.create(model="fake-model", prompt="The cairn", stream=True)
        text = "".join([c.choices[0].text async for c in stream if c.choices])
        assert text.startswith("Toy answer to: The cairn")
        with pytest.raises(openai.BadRequestError) as bad:
            await toy.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "x"}],
                tools=TOOLS,
            )
        assert bad.value.param == "tools" and "toy provider" in bad.value.message

"""The official `openai` SDK, unchanged, as a client of the gateway's OpenAI-compatible endpoints."""

from __future__ import annotations

import openai
import pytest
from cairn_testing import ServerProcess


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

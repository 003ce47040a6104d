"""The OpenAI surface beyond plain chat: `/v1/completions`, tools and response_format, and the rule for fields
beyond the contract (docs/gateway.md, "OpenAI compatibility"), on real gateways against the fake server and toy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess

from .conftest import sse, start_gateway, stats

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def toy() -> Iterator[ServerProcess]:
    srv = start_gateway(None)
    yield srv
    srv.stop()


def chat(gw: ServerProcess, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hi [[tokens:3]]"}])
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)


def complete(gw: ServerProcess, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/completions", json=body, timeout=30)


def frames(resp: httpx.Response) -> list[Any]:
    assert resp.status_code == 200, resp.text
    return [data for _, data in sse(resp.text)]


# --- /v1/completions ---------------------------------------------------------------------------------------


def test_completions_send_the_raw_prompt_to_the_upstream_completions_endpoint(
    gateway: ServerProcess, fake: ServerProcess
) -> None:
    resp = complete(
        gateway, model="fake-model", prompt=["Once upon a time [[tokens:3]]"], max_tokens=10, seed=7
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [
        {"index": 0, "text": "tok0 tok1 tok2", "finish_reason": "stop", "logprobs": None}
    ]
    assert body["usage"]["completion_tokens"] == 3
    sent = stats(fake)["last_body"]
    # The prompt as given, to the upstream's own completions endpoint: no chat messages, no Q/A wrapping.
    assert sent["prompt"] == "Once upon a time [[tokens:3]]" and "messages" not in sent
    assert sent["seed"] == 7 and sent["max_tokens"] == 10


def test_completions_stream_text_completion_frames_with_usage(gateway: ServerProcess) -> None:
    resp = complete(
        gateway,
        model="fake-model",
        prompt="Count [[tokens:4]]",
        stream=True,
        stream_options={"include_usage": True},
    )
    data = frames(resp)
    assert data[-1] == "[DONE]"
    chunks = data[:-1]
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == "tok0 tok1 tok2 tok3"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4


def test_completions_on_toy_and_their_errors_in_openai_shape(toy: ServerProcess) -> None:
    resp = complete(toy, prompt="The cairn", max_tokens=5)
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["text"].startswith("Toy answer to: The cairn") and choice["finish_reason"] == "length"
    for body, why in (
        ({"prompt": ["a", "b"]}, "one prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "x", "n": 2}, "n"),
        ({"prompt": "x", "max_tokens": 100_000}, "max_tokens"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
    ):
        resp = complete(toy, **body)
        assert resp.status_code == 400, (body, resp.text)
        error = resp.json()["error"]
        assert why in error["message"] and error["type"] == "invalid_request_error" and error["request_id"]


# --- tools and response_format ------------------------------------------------------------------------------


def test_tools_and_response_format_reach_the_upstream_unchanged(
    gateway: ServerProcess, fake: ServerProcess
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    tool_choice = {"type": "function", "function": {"name": "get_weather"}}
    resp = chat(gateway, tools=TOOLS, tool_choice=tool_choice, parallel_tool_calls=False, response_format=fmt)
    assert resp.status_code == 200, resp.text
    sent = stats(fake)["last_body"]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == tool_choice
    assert sent["parallel_tool_calls"] is False and sent["response_format"] == fmt


def test_upstream_tool_calls_come_back_whole_and_streamed(gateway: ServerProcess) -> None:
    messages = [{"role": "user", "content": "weather in Oslo? [[tool_call]]"}]
    resp = chat(gateway, messages=messages, tools=TOOLS)
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "call_fake" and call["function"] == {
        "name": "get_weather",
        "arguments": '{"q": "cairn"}',
    }

    data = frames(chat(gateway, messages=messages, tools=TOOLS, stream=True))
    chunks = [c for c in data[:-1] if c["choices"]]
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["id"] == "call_fake" and calls[0]["function"]["name"] == "get_weather"
    assert "".join(tc["function"].get("arguments", "") for tc in calls) == '{"q": "cairn"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_conversation_reaches_the_upstream_as_sent(
    gateway: ServerProcess, fake: ServerProcess
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    assert chat(gateway, messages=messages, tools=TOOLS).status_code == 200
    sent = stats(fake)["last_body"]["messages"]
    assert sent[2] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"}
    assert sent[0]["role"] == "system"  # servers such as llama.cpp's do not know "developer"


# --- fields beyond the contract -----------------------------------------------------------------------------


def test_other_fields_reach_the_upstream_and_logprobs_come_back(
    gateway: ServerProcess, fake: ServerProcess
) -> None:
    extra = {
        "logprobs": True,
        "top_logprobs": 2,
        "presence_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "top_k": 40,  # vLLM's extensions
        "repetition_penalty": 1.1,
        "min_p": 0.05,
        "user": "alice",
        "metadata": {"team": "hr"},
    }
    resp = chat(gateway, **extra)
    assert resp.status_code == 200, resp.text
    sent = stats(fake)["last_body"]
    assert {k: sent.get(k) for k in extra} == extra
    assert [t["token"] for t in resp.json()["choices"][0]["logprobs"]["content"]] == [
        "tok0 ",
        "tok1 ",
        "tok2",
    ]
    data = frames(chat(gateway, logprobs=True, stream=True))
    assert any(c["choices"] and c["choices"][0].get("logprobs") for c in data[:-1])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", TOOLS),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("logprobs", True),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 1.0),
        ("logit_bias", {"1": 5}),
        ("top_k", 40),
        ("repetition_penalty", 1.1),
        ("modalities", ["text", "audio"]),
        ("store", True),
    ],
)
def test_in_process_providers_refuse_what_they_cannot_honour(
    toy: ServerProcess, field: str, value: Any
) -> None:
    for stream in (False, True):
        resp = chat(toy, stream=stream, **{field: value})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == field and error["code"] == "BAD_REQUEST"
        assert f"'{field}" in error["message"] and "toy provider" in error["message"]


def test_fields_that_ask_for_nothing_pass_everywhere(toy: ServerProcess) -> None:
    neutral = {
        "response_format": {"type": "text"},
        "logprobs": False,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "tool_choice": "none",
        "parallel_tool_calls": True,
        "store": False,
        "user": "alice",
        "metadata": {"team": "hr"},
        "service_tier": "auto",
        "top_k": None,
        "n": 1,
    }
    resp = chat(toy, **neutral)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith("Toy answer")
    resp = chat(toy, n=2)
    assert resp.status_code == 400 and "n" in resp.json()["error"]["message"]


def test_a_fallback_that_cannot_honour_the_fields_is_skipped(fake: ServerProcess) -> None:
    gw = start_gateway(fake, LLM_FALLBACK_PROVIDERS="toy", LLM_RETRIES="0")
    try:
        # Without tools the toy fallback answers; with them it would drop the tools, so the upstream's own
        # failure is the answer, not toy's 400.
        assert chat(gw, messages=[{"role": "user", "content": "[[fail_always]]"}]).status_code == 200
        resp = chat(gw, messages=[{"role": "user", "content": "[[fail_always]]"}], tools=TOOLS)
        assert resp.status_code == 502, resp.text
        assert resp.json()["error"]["code"] == "PROVIDER_ERROR"
    finally:
        gw.stop()


def test_response_format_json_answers_are_json_from_the_upstream(gateway: ServerProcess) -> None:
    # The fake answers in JSON whenever response_format is set; the gateway hands it back untouched.
    fmt = {"type": "json_object"}
    content = chat(gateway, response_format=fmt).json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)

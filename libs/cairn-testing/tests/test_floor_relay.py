"""The bench's floor relay must pass answers through untouched, or its numbers would mean nothing."""

from __future__ import annotations

import httpx
import pytest
from cairn_testing import ServerProcess, start_fake_openai, start_server

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi [[tokens:4]]"}]}


@pytest.fixture(scope="module")
def pair() -> tuple[ServerProcess, ServerProcess]:
    fake = start_fake_openai("floor-fake")
    relay = start_server(
        "floor-relay", ["cairn_testing.floor_relay", "--port", "{port}", "--upstream", fake.url]
    )
    yield fake, relay
    relay.stop()
    fake.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_relays_the_upstream_answer_byte_for_byte(pair, stream: bool) -> None:
    fake, relay = pair
    path = "/v1/chat/completions"
    direct = httpx.post(fake.url + path, json={**BODY, "stream": stream})
    relayed = httpx.post(relay.url + path, json={**BODY, "stream": stream})
    assert relayed.status_code == direct.status_code == 200
    assert relayed.headers["content-type"] == direct.headers["content-type"]
    if stream:
        assert relayed.text == direct.text and relayed.text.rstrip().endswith("data: [DONE]")
    else:
        assert relayed.json()["choices"][0]["message"] == direct.json()["choices"][0]["message"]
        assert "tok3" in relayed.text


def test_relays_upstream_errors_with_their_status(pair) -> None:
    _, relay = pair
    bad = {"model": "fake-model", "messages": [{"role": "user", "content": "[[fail_always]]"}]}
    resp = httpx.post(relay.url + "/v1/chat/completions", json=bad)
    assert resp.status_code == 500 and "synthetic failure" in resp.text

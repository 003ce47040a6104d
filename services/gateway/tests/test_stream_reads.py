"""A stream is relayed one upstream read at a time (many frames per read from a fast server): what the client
receives must be what a frame-by-frame relay sends, and the first-token and idle timeouts must still hold.

The fake's `[[burst]]` sends a stream's frames in one write (one read for the gateway); `[[delay_ms:N]]`
paces them, one frame per read. Both answers must come out the same, byte for byte.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from cairn_testing import ServerProcess

from .conftest import sse

_CREATED = re.compile(rb'"created":\d+')


def _chat(gw: ServerProcess, prompt: str, rid: str) -> bytes:
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers={"X-Request-ID": rid}, timeout=15)
    assert resp.status_code == 200, resp.text
    return _CREATED.sub(b'"created":0', resp.content)  # the one field that may differ: a clock's second


@pytest.mark.parametrize(
    "marks",
    ["[[tokens:40]]", "[[tool_call]]", "[[tokens:5]] [[error_frame]]", "[[tokens:5]] [[no_done]]"],
)
def test_a_burst_in_one_read_comes_out_as_the_frames_one_by_one(gateway: ServerProcess, marks: str) -> None:
    burst = _chat(gateway, f"{marks} [[burst]]", "same-id")
    paced = _chat(gateway, f"{marks} [[delay_ms:5]]", "same-id")
    assert burst == paced
    frames = sse(burst)
    assert frames[-1][1] == "[DONE]"
    if marks == "[[tokens:40]]":  # role, 40 tokens, finish, usage, [DONE]: nothing lost or merged
        assert len(frames) == 44
        text = "".join(f["choices"][0]["delta"].get("content") or "" for _, f in frames[:-3])
        assert text == " ".join(f"tok{i}" for i in range(40))
        assert frames[-2][1]["usage"]["completion_tokens"] == 40


def _generate(gw: ServerProcess, prompt: str) -> list[tuple[str, object]]:
    resp = httpx.post(
        f"{gw.url}/v1/generate",
        json={"prompt": prompt, "stream": True},
        headers={"X-Request-ID": "same-id"},
        timeout=15,
    )
    assert resp.status_code == 200, resp.text
    events = sse(resp.text)
    events[-1][1].pop("latency_ms")  # type: ignore[union-attr]  # a clock, different on every call
    return events


@pytest.mark.parametrize("marks", ["[[tokens:40]]", "[[tokens:5]] [[error_frame]]"])
def test_generate_events_are_the_same_whatever_the_reads(gateway: ServerProcess, marks: str) -> None:
    burst = _generate(gateway, f"{marks} [[burst]]")
    paced = _generate(gateway, f"{marks} [[delay_ms:5]]")
    assert burst == paced
    assert burst[0][0] == "meta" and burst[-1][0] == "done"


def test_a_read_with_frames_but_no_token_does_not_count_as_the_first_token(gateway: ServerProcess) -> None:
    # The role frame and an empty piece arrive together, then nothing: no token yet, so the first-token
    # timeout (1.5 s here) applies and the request fails before its first byte, as a 504.
    started = time.monotonic()
    resp = httpx.post(
        f"{gateway.url}/v1/generate",
        json={"prompt": "[[tokens:0]] [[stall]] [[burst]]", "stream": True},
        timeout=15,
    )
    assert resp.status_code == 504, resp.text
    assert resp.json()["reason_code"] == "PROVIDER_TIMEOUT"
    assert 1.3 < time.monotonic() - started < 4


def test_a_burst_then_silence_is_relayed_then_times_out_idle(gateway: ServerProcess) -> None:
    # The tokens of the burst reach the client at once, not held for a read that never comes; then the
    # idle timeout (1.5 s here) ends the stream with an error and `done`.
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/generate",
        json={"prompt": "[[tokens:3]] [[stall]] [[burst]]", "stream": True},
        timeout=15,
    ) as resp:
        started = time.monotonic()
        body = b""
        chunks = resp.iter_bytes()
        while b"tok2" not in body:
            body += next(chunks)
        assert time.monotonic() - started < 1.0  # before the idle timeout
        body += b"".join(chunks)
    waited = time.monotonic() - started
    events = sse(body)
    assert "".join(d["text"] for e, d in events if e == "delta") == "tok0 tok1 tok2"
    assert events[-2][0] == "error" and events[-2][1]["reason_code"] == "PROVIDER_TIMEOUT"
    assert events[-1][0] == "done" and events[-1][1]["status"] == "error"
    assert 1.3 < waited < 4

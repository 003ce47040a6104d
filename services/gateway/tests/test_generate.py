"""/v1/generate against a real gateway process relaying to a real fake OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import httpx
from cairn_testing import ServerProcess, wait_for

from .conftest import sse, stats


def post(gw: ServerProcess, body: dict, rid: str | None = None, **kw) -> httpx.Response:
    headers = {"X-Request-ID": rid} if rid else {}
    return httpx.post(f"{gw.url}/v1/generate", json=body, headers=headers, timeout=kw.pop("timeout", 15))


def test_non_stream_success_has_the_contract_fields(gateway: ServerProcess, fake: ServerProcess) -> None:
    rid = uuid.uuid4().hex
    resp = post(gateway, {"prompt": "hello [[tokens:4]]", "max_tokens": 20, "seed": 7}, rid)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["text"] == "tok0 tok1 tok2 tok3"
    assert body["provider"] == "openai_compat" and body["model"] == "fake-model"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    assert body["request_id"] == rid and resp.headers["x-request-id"] == rid
    assert body["reason_code"] is None and body["stop_reason"] == "eos"
    upstream = stats(fake)["last_body"]
    assert upstream["stream"] is False and upstream["max_tokens"] == 20 and upstream["seed"] == 7
    assert stats(fake)["last_headers"]["x-request-id"] == rid
    assert "traceparent" in stats(fake)["last_headers"]
    # One JSON access line for the request, carrying what operators filter on.
    lines = [json.loads(line) for line in gateway.log_text().splitlines() if rid in line]
    access = [entry for entry in lines if entry.get("event") == "request"]
    assert len(access) == 1, lines
    assert access[0] | {"trace_id": "x"} == access[0] | {
        "service": "llm-gateway",
        "request_id": rid,
        "trace_id": "x",
        "status": 200,
        "provider": "openai_compat",
        "model": "fake-model",
        "outcome": "ok",
        "reason_code": None,
        "prompt_tokens": 11,
        "completion_tokens": 4,
    }
    assert len(access[0]["trace_id"]) == 32 and access[0]["duration_ms"] > 0


def test_overhead_header_leaves_out_the_time_the_model_took(gateway: ServerProcess) -> None:
    # The upstream takes 300 ms before it answers; the gateway's own share is a few ms on top of that. A header
    # that counted the wait, or that subtracted more than the wait (clamped to 0), fails.
    resp = post(gateway, {"prompt": "[[slow_first:0.3]] [[tokens:2]]"})
    assert resp.status_code == 200 and resp.json()["latency_ms"] >= 300
    assert 0 < float(resp.headers["x-gateway-overhead-ms"]) < 100


def test_stream_success_orders_events_and_ends_with_done(gateway: ServerProcess) -> None:
    resp = post(gateway, {"prompt": "hi [[tokens:5]]", "stream": True})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse(resp.text)
    names = [e for e, _ in events]
    assert names[0] == "meta" and names[-1] == "done"
    assert names.count("delta") == 5
    assert "".join(d["text"] for e, d in events if e == "delta") == "tok0 tok1 tok2 tok3 tok4"
    done = events[-1][1]
    assert (
        done["status"] == "ok" and done["usage"]["completion_tokens"] == 5
    )  # from include_usage, not invented


def test_finished_streams_reuse_the_upstream_connection(gateway: ServerProcess, fake: ServerProcess) -> None:
    # The fake ends each body 50 ms after [DONE]: a connection given back before that end would be closed, and
    # every stream would pay for a new one (a TLS handshake, with a remote server).
    before = stats(fake)["connections"]
    for _ in range(4):
        resp = post(gateway, {"prompt": "[[tokens:3]] [[linger_ms:50]]", "stream": True})
        assert [e for e, _ in sse(resp.text)][-1] == "done"
        time.sleep(0.2)  # past the linger, so the connection is back in the pool
    assert stats(fake)["connections"] - before <= 1


def test_timeout_before_first_byte(gateway: ServerProcess) -> None:
    for stream in (False, True):
        resp = post(gateway, {"prompt": "[[slow_first:10]]", "stream": stream, "timeout_ms": 800})
        assert resp.status_code == 504, resp.text
        assert resp.json()["reason_code"] == "PROVIDER_TIMEOUT"
        assert resp.json()["request_id"]


def test_silent_upstream_times_out_on_first_token(gateway: ServerProcess) -> None:
    resp = post(gateway, {"prompt": "[[silent]]", "stream": True})
    assert resp.status_code == 504
    assert resp.json()["reason_code"] == "PROVIDER_TIMEOUT"


def test_malformed_json_is_a_clear_error(gateway: ServerProcess) -> None:
    resp = post(gateway, {"prompt": "[[malformed]]"})
    assert resp.status_code == 502
    assert resp.json()["reason_code"] == "MALFORMED_OUTPUT"
    # In a stream, a non-JSON line is skipped and the answer still arrives.
    events = sse(post(gateway, {"prompt": "[[malformed]] [[tokens:3]]", "stream": True}).text)
    assert events[-1][1]["status"] == "ok"
    assert "".join(d["text"] for e, d in events if e == "delta") == "tok0 tok1 tok2"


def test_500_then_success_retries_once(gateway: ServerProcess, fake: ServerProcess) -> None:
    for stream in (False, True):
        rid = uuid.uuid4().hex
        resp = post(gateway, {"prompt": "[[fail_once]] [[tokens:3]]", "stream": stream}, rid)
        assert resp.status_code == 200
        assert stats(fake)["attempts"][rid] == 2
        if stream:
            events = sse(resp.text)
            assert "".join(d["text"] for e, d in events if e == "delta") == "tok0 tok1 tok2"  # not duplicated
        else:
            assert resp.json()["text"] == "tok0 tok1 tok2"


def test_a_500_is_retried_until_the_retries_run_out(gateway: ServerProcess, fake: ServerProcess) -> None:
    rid = uuid.uuid4().hex
    resp = post(gateway, {"prompt": "[[fail_always]]"}, rid)
    assert resp.status_code == 502 and resp.json()["reason_code"] == "PROVIDER_ERROR"
    assert stats(fake)["attempts"][rid] == 3  # 1 + LLM_RETRIES (2)


def test_non_retryable_status_is_not_retried(gateway: ServerProcess, fake: ServerProcess) -> None:
    # A 4xx other than 429 says the request itself is wrong: sending it again gets the same answer.
    for status in (400, 401, 404, 422):
        for stream in (False, True):
            rid = uuid.uuid4().hex
            resp = post(gateway, {"prompt": f"[[fail_status:{status}]]", "stream": stream}, rid)
            assert resp.status_code == 502 and resp.json()["reason_code"] == "PROVIDER_ERROR", resp.text
            assert str(status) in resp.json()["message"]
            assert stats(fake)["attempts"][rid] == 1, (status, stream)


def test_disconnect_mid_stream_ends_with_error_and_done(gateway: ServerProcess) -> None:
    events = sse(post(gateway, {"prompt": "[[disconnect_mid]] [[tokens:6]]", "stream": True}).text)
    names = [e for e, _ in events]
    assert names[-2:] == ["error", "done"]
    assert names.count("delta") == 2
    assert events[-2][1]["reason_code"] == "STREAM_INTERRUPTED"
    assert events[-1][1]["status"] == "error" and events[-1][1]["reason_code"] == "STREAM_INTERRUPTED"


def test_in_band_error_frame(gateway: ServerProcess) -> None:
    events = sse(post(gateway, {"prompt": "[[error_frame]] [[tokens:6]]", "stream": True}).text)
    assert [e for e, _ in events][-2:] == ["error", "done"]
    assert "upstream exploded" in events[-2][1]["message"]


def test_stream_without_done_sentinel_is_interrupted(gateway: ServerProcess) -> None:
    events = sse(post(gateway, {"prompt": "[[no_done]] [[tokens:3]]", "stream": True}).text)
    assert [e for e, _ in events][-2:] == ["error", "done"]
    assert events[-1][1]["reason_code"] == "STREAM_INTERRUPTED"


def test_client_disconnect_cancels_upstream_stream(gateway: ServerProcess, fake: ServerProcess) -> None:
    rid = uuid.uuid4().hex
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/generate",
        json={"prompt": "[[endless]]", "stream": True},
        headers={"X-Request-ID": rid},
        timeout=10,
    ) as resp:
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("event: delta")
            if seen >= 3:
                break
    wait_for(lambda: rid in stats(fake)["disconnected"], "the fake server to see the disconnect", 5)
    sent = stats(fake)["tokens_sent"][rid]
    time.sleep(0.5)
    assert stats(fake)["tokens_sent"][rid] == sent  # nothing more is generated for a client that left


def test_client_disconnect_cancels_upstream_non_stream(gateway: ServerProcess, fake: ServerProcess) -> None:
    rid = uuid.uuid4().hex
    with contextlib.suppress(httpx.ReadTimeout):
        post(gateway, {"prompt": "[[slow_first:3]]"}, rid, timeout=0.5)
    wait_for(lambda: rid in stats(fake)["disconnected"], "the fake server to see the disconnect", 5)


def test_bad_input_gets_reason_codes(gateway: ServerProcess) -> None:
    cases = [
        ({"prompt": "x", "max_tokens": 100_000}, 400, "TOKEN_LIMIT"),
        ({"prompt": ""}, 400, "BAD_REQUEST"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, 400, "BAD_REQUEST"),
        ({"prompt": "x", "citations_required": True}, 400, "BAD_REQUEST"),
        ({"prompt": "x", "temperature": 9}, 400, "BAD_REQUEST"),
        ({"prompt": "x", "model": "no-such-model"}, 404, "MODEL_NOT_FOUND"),
    ]
    for body, status, code in cases:
        resp = post(gateway, body)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["reason_code"] == code and resp.json()["message"] and resp.json()["request_id"]
    resp = httpx.post(f"{gateway.url}/v1/generate", content=b"{not json", timeout=5)
    assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST"
    resp = httpx.post(f"{gateway.url}/v1/generate", content=b"x" * 2_000_000, timeout=5)
    assert resp.status_code == 413 and resp.json()["reason_code"] == "PAYLOAD_TOO_LARGE"


def test_models_health_and_metrics(fake: ServerProcess) -> None:
    # Its own gateway: the metrics it checks come from the requests sent here, not from earlier tests.
    from .conftest import start_gateway

    gw = start_gateway(fake)
    try:
        models = httpx.get(f"{gw.url}/v1/models").json()["data"]
        assert (
            models[0]["id"] == "fake-model"
            and models[0]["provider"] == "openai_compat"
            and models[0]["default"]
        )
        assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
        assert post(gw, {"prompt": "[[tokens:2]]", "stream": True}).status_code == 200
        assert post(gw, {"prompt": "[[slow_first:10]]", "timeout_ms": 300}).status_code == 504
        text = httpx.get(f"{gw.url}/metrics").text
        for name in (
            "cairn_gateway_requests_total",
            "cairn_gateway_time_to_first_token_seconds_bucket",
            "cairn_gateway_queue_depth",
            "cairn_gateway_circuit_state",
            "cairn_gateway_in_flight",
            "cairn_gateway_tokens_total",
            "process_resident_memory_bytes",
        ):
            assert name in text, name
        assert 'reason_code="PROVIDER_TIMEOUT"' in text
        completion = next(
            line
            for line in text.splitlines()
            if line.startswith("cairn_gateway_tokens_total") and 'kind="completion"' in line
        )
        assert float(completion.rsplit(" ", 1)[1]) == 2  # the stream's two tokens, and nothing else
    finally:
        gw.stop()


def test_an_empty_admin_token_turns_admin_endpoints_off() -> None:
    """LLM_ADMIN_TOKEN= (set, but empty) once matched an empty Authorization header and let anyone in."""
    from .conftest import start_gateway

    gw = start_gateway(None, LLM_ADMIN_TOKEN="")
    try:
        for headers in ({}, {"Authorization": ""}):
            resp = httpx.post(
                f"{gw.url}/admin/models/unload", json={"alias": "toy"}, headers=headers, timeout=30
            )
            assert resp.status_code == 401 and resp.json()["reason_code"] == "UNAUTHORIZED", resp.text
        assert httpx.get(f"{gw.url}/readyz", timeout=10).status_code == 200  # nothing was unloaded
    finally:
        gw.stop()


def test_openai_requests_outside_the_contract_are_400_not_500(gateway: ServerProcess) -> None:
    for body, why in (
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "content"),
    ):
        resp = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=30)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["reason_code"] == "BAD_REQUEST" and why in error["message"] and error["request_id"]

"""The BFF against a real fake upstream process: byte-for-byte streams, disconnects, breaks, pass-through."""

from __future__ import annotations

import httpx
import pytest
from cairn_testing import ServerProcess, free_port, wait_for

from .conftest import sse, start_bff

CHAT = "/api/chat"


def _stats(upstream: ServerProcess) -> dict:
    return httpx.get(f"{upstream.url}/_stats").json()


def test_stream_is_relayed_byte_for_byte(upstream: ServerProcess, bff: ServerProcess) -> None:
    body = {"query": "hello", "stream": True}
    direct = httpx.post(f"{upstream.url}/v1/chat", json=body)
    via = httpx.post(f"{bff.url}{CHAT}", json=body)
    assert via.status_code == 200
    assert via.headers["content-type"].startswith("text/event-stream")
    assert via.headers["x-cache"] == "miss"
    assert via.content == direct.content
    names = [name for name, _ in sse(via.text)]
    assert names == ["sources", *["delta"] * 5, "citations", "done"]


def test_stream_forwards_bytes_before_upstream_finishes_and_propagates_ids(
    upstream: ServerProcess, bff: ServerProcess
) -> None:
    # The upstream holds after `sources` until released: a buffering proxy would never show the first frame.
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        headers = {"X-Request-ID": "held-stream-1"}
        with client.stream(
            "POST", f"{bff.url}{CHAT}", json={"query": "[[hold]]", "stream": True}, headers=headers
        ) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            assert first.startswith(b"event: sources\n")
            seen = _stats(upstream)["headers"]
            assert seen["x-request-id"] == "held-stream-1"
            assert seen["traceparent"].startswith("00-")
            httpx.get(f"{upstream.url}/_release")
            rest = b"".join(chunks)
    assert sse((first + rest).decode())[-1][0] == "done"


def test_browser_disconnect_cancels_upstream(upstream: ServerProcess, bff: ServerProcess) -> None:
    before = _stats(upstream)["cancelled"]
    with (
        httpx.Client(timeout=5.0) as client,
        client.stream("POST", f"{bff.url}{CHAT}", json={"query": "[[hold]] bye", "stream": True}) as r,
    ):
        assert next(r.iter_raw()).startswith(b"event: sources")
    # The client is gone; the BFF must close its upstream stream, which the upstream sees as a cancel.
    wait_for(lambda: _stats(upstream)["cancelled"] > before, "the upstream stream to be cancelled")
    metrics = httpx.get(f"{bff.url}/metrics").text
    assert 'cairn_bff_streams_total{outcome="client_gone"}' in metrics


def test_upstream_break_ends_with_error_and_done(bff: ServerProcess) -> None:
    r = httpx.post(f"{bff.url}{CHAT}", json={"query": "[[break]]", "stream": True})
    events = sse(r.text)
    assert [n for n, _ in events][:3] == ["sources", "delta", "delta"]
    assert events[-2][0] == "error" and events[-2][1]["reason_code"] == "STREAM_INTERRUPTED"
    assert events[-1] == ("done", events[-1][1]) and events[-1][1]["status"] == "error"
    assert events[-1][1]["reason_code"] == "STREAM_INTERRUPTED"


def test_non_stream_and_upstream_errors_pass_through(bff: ServerProcess) -> None:
    ok = httpx.post(f"{bff.url}{CHAT}", json={"query": "hi"})
    assert ok.status_code == 200 and ok.json() == {"answer": "echo: hi", "status": "ok"}
    assert ok.headers["x-cache"] == "miss"
    bad = httpx.post(f"{bff.url}{CHAT}", json={"query": "", "stream": True})
    assert bad.status_code == 400 and bad.json()["reason_code"] == "BAD_REQUEST"


def test_bad_json_is_a_400_from_the_bff(bff: ServerProcess) -> None:
    for content in (b"not json", b'{"stream": "maybe"}'):
        r = httpx.post(f"{bff.url}{CHAT}", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["reason_code"] == "BAD_REQUEST" and r.json()["request_id"]


def test_upload_list_delete_chunk_models_pass_through(bff: ServerProcess) -> None:
    files = {"file": ("notes.md", b"# Notes\n\n" + b"x" * 5000, "text/markdown")}
    up = httpx.post(f"{bff.url}/api/documents", files=files)
    assert up.status_code == 201
    assert up.json()["content_type"].startswith("multipart/form-data; boundary=")
    assert up.json()["bytes"] > 5000
    listed = httpx.get(f"{bff.url}/api/documents", params={"collection": "hr", "q": "leave", "limit": 5})
    assert listed.json()["query"] == "collection=hr&q=leave&limit=5"
    assert httpx.get(f"{bff.url}/api/collections").json() == {"collections": [{"name": "hr", "documents": 2}]}
    # An id with characters that mean something in a URL stays one path segment upstream.
    deleted = httpx.delete(f"{bff.url}/api/documents/doc%20x%3Fy%23z")
    assert deleted.json()["id"] == "doc x?y#z"
    assert deleted.json()["raw_path"] == "/v1/documents/doc%20x%3Fy%23z"
    assert httpx.get(f"{bff.url}/api/chunks/doc:3").json()["chunk_id"] == "doc:3"
    assert httpx.get(f"{bff.url}/api/models").json()["data"][0]["id"] == "toy"
    assert httpx.get(f"{bff.url}/readyz").json() == {"status": "ready", "query_service": "up"}


@pytest.mark.slow
def test_upstream_down_is_a_503_with_a_reason_code(upstream: ServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    srv = start_bff(dead, dead)
    try:
        for body in ({"query": "q"}, {"query": "q", "stream": True}):
            r = httpx.post(f"{srv.url}{CHAT}", json=body)
            assert r.status_code == 503
            assert r.json()["reason_code"] == "PROVIDER_UNAVAILABLE"
            assert "query service" in r.json()["message"]
        assert httpx.get(f"{srv.url}/readyz").status_code == 503
        dash = httpx.get(f"{srv.url}/api/dashboard").json()
        assert dash["gateway"]["up"] is False and dash["query"]["up"] is False
    finally:
        srv.stop()
    assert "Traceback" not in srv.log_text()


def test_dashboard_summarises_the_services_metrics(bff: ServerProcess) -> None:
    d = httpx.get(f"{bff.url}/api/dashboard").json()
    gw = d["gateway"]
    assert gw["up"] is True
    assert gw["requests_total"] == 9
    assert gw["requests_by_status"] == {"ok": 7, "fallback": 2}
    assert gw["fallbacks_by_reason"] == {"PROVIDER_TIMEOUT": 2}
    assert gw["queue_depth"] == {"toy": 3}
    assert gw["provider_up"] == {"toy": 1}
    assert gw["time_to_first_token_s"]["mean"] == pytest.approx(0.25)
    assert gw["time_to_first_token_s"]["p50"] == pytest.approx(0.25)
    assert d["query"]["fallbacks_by_reason"] == {"NO_CONTEXT": 1}
    # The gateway's models with their manifests (from its /v1/models).
    toy, remote = gw["models"]
    assert (toy["model"], toy["state"], toy["manifest"]["name"], toy["manifest"]["licence"]) == (
        "toy",
        "loaded",
        "toy",
        "none needed",
    )
    assert remote == {
        "model": "remote",
        "state": "not_loaded",
        "reason_code": "PROVIDER_UNAVAILABLE",
        "worker_crashes": None,  # no worker process: another server holds the model
        "notice": None,
        "manifest": None,
    }


def test_page_and_dashboard_are_served_with_security_headers(bff: ServerProcess) -> None:
    for path in ("/", "/dashboard", "/static/app.js"):
        r = httpx.get(f"{bff.url}{path}")
        assert r.status_code == 200
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    assert '<script src="/static/app.js"' in httpx.get(f"{bff.url}/").text


def test_a_qs_replica_that_refuses_connections_is_skipped(upstream: ServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    srv = start_bff(dead, upstream.url, BFF_QS_URLS=f"{dead},{upstream.url}")
    try:
        for i in range(6):  # each replica's turn comes up: the dead one's is passed on, never failed
            stream = i % 2 == 1
            r = httpx.post(f"{srv.url}{CHAT}", json={"query": "hello", "stream": stream})
            assert r.status_code == 200
            if stream:
                assert sse(r.text)[-1][0] == "done"
        assert httpx.get(f"{srv.url}/api/documents").status_code == 200
    finally:
        srv.stop()
    assert "Traceback" not in srv.log_text()

"""One chat request → one OpenTelemetry trace with spans in BFF, QS and the gateway, and log lines in all three
that carry the same request_id and trace_id. Real processes export over OTLP/HTTP to a receiver run here."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_testing import wait_for
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from .conftest import start_stack

SERVICES = {"bff", "query-service", "llm-gateway"}


class OtlpReceiver:
    """A tiny OTLP/HTTP trace receiver: decodes ExportTraceServiceRequest protobufs into plain dicts."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(request)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            {
                                "service": attrs.get("service.name"),
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex() or None,
                            }
                        )

    def of_trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]


def _tree_is_whole(spans: list[dict[str, Any]]) -> bool:
    """Every parent a span names has arrived too (so the roots are the only spans without one)."""
    ids = {s["span_id"] for s in spans}
    return len(spans) >= 5 and all(s["parent"] in ids for s in spans if s["parent"] is not None)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()  # shutdown() only stops the loop; the listening socket stays open without this
    r.thread.join(timeout=5)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


@pytest.mark.slow
def test_one_chat_request_is_one_trace_across_all_three_services(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    stack = start_stack(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    try:
        bff = stack.bff.url
        doc = {
            "id": "trace-doc",
            "title": "Trails",
            "text": "A cairn is a pile of stones that marks a trail.",
        }
        assert httpx.post(f"{bff}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        rid = "e2e-one-trace-0001"
        with httpx.stream(
            "POST",
            f"{bff}/api/chat",
            json={"query": "What does a cairn mark on a trail?", "stream": True},
            headers={"X-Request-ID": rid},
            timeout=30,
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["x-request-id"] == rid
            body = resp.read().decode()
        assert "event: delta" in body and body.rstrip().split("\n\n")[-1].startswith("event: done")

        # The BFF's access line names the trace it started for this request id.
        def bff_trace_id() -> str | None:
            lines = _log_lines(stack.bff.log_path)
            return next((ln["trace_id"] for ln in lines if ln.get("request_id") == rid), None)

        trace_id = wait_for(bff_trace_id, "a BFF log line that carries the request id", 15, 0.1)

        # Spans arrive in batches (every 0.5 s per process), and a parent ends, so is exported, after its
        # children: a child can be here while its parent is still in the next batch. Wait for the whole tree.
        def whole_tree() -> list[dict[str, Any]] | None:
            spans = receiver.of_trace(trace_id)
            return spans if {s["service"] for s in spans} >= SERVICES and _tree_is_whole(spans) else None

        spans = wait_for(whole_tree, f"the spans of trace {trace_id} from every service", 15, 0.2)
        services = {s["service"] for s in spans}
        assert services == SERVICES, f"spans of trace {trace_id} came from {services}"
    finally:
        stack.stop()

    # One tree: exactly one root (the BFF's server span), every other span's parent is in the trace.
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if s["parent"] is None]
    assert len(roots) == 1 and roots[0]["service"] == "bff", roots
    assert all(s["parent"] in ids for s in spans if s["parent"] is not None), spans
    by_id = {s["span_id"]: s for s in spans}
    server = 2  # SpanKind.SPAN_KIND_SERVER in OTLP
    qs_server = [s for s in spans if s["service"] == "query-service" and s["kind"] == server]
    gw_server = [s for s in spans if s["service"] == "llm-gateway" and s["kind"] == server]
    assert qs_server and by_id[qs_server[0]["parent"]]["service"] == "bff"
    assert gw_server and all(by_id[s["parent"]]["service"] == "query-service" for s in gw_server)

    # Logs: every line this request caused, in every service, carries the same request_id and trace_id.
    for server_process in stack.all:
        lines = _log_lines(server_process.log_path)
        mine = [ln for ln in lines if ln.get("request_id") == rid or ln.get("trace_id") == trace_id]
        assert mine, f"{server_process.name} logged nothing for the request"
        assert all(ln.get("request_id") == rid and ln.get("trace_id") == trace_id for ln in mine), mine

"""`scripts/smoke_chat.sh` against a stand-in BFF on loopback: it reads a streamed answer whatever its line ends
(the SSE standard allows CRLF, LF and CR), and it still fails a stream that does not end with `done`."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "smoke_chat.sh"
SOURCE = {"chunk_id": "cairn-smoke-doc:0", "title": "Cairn smoke test"}
ANSWER = {"status": "ok", "answer": "Every four hours.", "sources": [SOURCE], "citations": [SOURCE]}
NO_CONTEXT = {"status": "fallback", "reason_code": "NO_CONTEXT", "answer": "Nothing in the documents."}


def stream_body(line_end: str, *, with_done: bool = True) -> bytes:
    events: list[tuple[str, dict[str, Any]]] = [
        ("sources", {"sources": [SOURCE]}),
        ("meta", {"model": "toy", "provider": "toy"}),
        ("delta", {"text": "A brass "}),
        ("delta", {"text": "telescope."}),
        ("citations", {"citations": [SOURCE]}),
    ]
    if with_done:
        events.append(("done", {"status": "ok", "stop_reason": "eos"}))
    frames = (f"event: {name}{line_end}data: {json.dumps(data)}{line_end}{line_end}" for name, data in events)
    return "".join(frames).encode()


class FakeBff(BaseHTTPRequestHandler):
    stream = b""

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b'{"status": "ok"}')

    def do_DELETE(self) -> None:
        self._send(200, b'{"deleted": true}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/documents":
            self._send(201, b'{"chunks": 1}')
        elif body.get("stream"):
            self._send(200, self.stream, "text/event-stream")
        else:
            answer = NO_CONTEXT if body["collection"].startswith("smoke-empty") else ANSWER
            self._send(200, json.dumps(answer).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def bff() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (FakeBff,), {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def smoke(server: ThreadingHTTPServer, stream: bytes) -> subprocess.CompletedProcess[str]:
    server.RequestHandlerClass.stream = stream  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BFF_", "SMOKE_"))}
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**inherited, "BFF_URL": url, "SMOKE_TIMEOUT_S": "10"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("line_end", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_the_smoke_script_reads_a_stream_whatever_its_line_ends(
    bff: ThreadingHTTPServer, line_end: str
) -> None:
    result = smoke(bff, stream_body(line_end))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "stream chat: 6 events (sources,meta,delta,citations,done), 2 deltas, done status ok" in result.stdout
    )


def test_the_smoke_script_fails_a_stream_that_does_not_end_with_done(bff: ThreadingHTTPServer) -> None:
    result = smoke(bff, stream_body("\r\n", with_done=False))
    assert result.returncode != 0
    assert "the last event is 'citations', not 'done'" in result.stderr

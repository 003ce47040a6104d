"""A tiny stand-in for QS and the gateway, run as a real process (`python -m fake_upstream --port N`).

It lets the BFF tests control exactly what an upstream sends and see what the BFF did to it:
- POST /v1/chat, stream: `sources`, 5 `delta`s, `citations`, `done`. Markers in `query`:
  `[[hold]]` sends `sources` then waits until GET /_release (or the client leaves);
  `[[break]]` sends two deltas and closes the connection without `done`.
  A stream that ends because the client left counts in /_stats `cancelled`.
- POST /v1/chat, non-stream: JSON; an empty query is a 400 with a Cairn error body.
- POST /v1/documents: echoes the content type and body size; GET /v1/documents echoes the query string.
- GET /v1/chunks/{id}, DELETE /v1/documents/{id}: echo the id as received.
- GET /v1/models, /metrics (gateway and QS metric names), /healthz, /_stats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

METRICS = """\
# HELP cairn_gateway_requests_total Requests
# TYPE cairn_gateway_requests_total counter
cairn_gateway_requests_total{endpoint="generate",provider="toy",reason_code="",status="ok"} 7.0
cairn_gateway_requests_total{endpoint="generate",provider="toy",reason_code="PROVIDER_TIMEOUT",status="fallback"} 2.0
# HELP cairn_gateway_fallbacks_total Fallbacks
# TYPE cairn_gateway_fallbacks_total counter
cairn_gateway_fallbacks_total{reason_code="PROVIDER_TIMEOUT"} 2.0
# HELP cairn_gateway_time_to_first_token_seconds TTFT
# TYPE cairn_gateway_time_to_first_token_seconds histogram
cairn_gateway_time_to_first_token_seconds_bucket{le="0.1",provider="toy"} 0.0
cairn_gateway_time_to_first_token_seconds_bucket{le="0.25",provider="toy"} 4.0
cairn_gateway_time_to_first_token_seconds_bucket{le="0.5",provider="toy"} 8.0
cairn_gateway_time_to_first_token_seconds_bucket{le="+Inf",provider="toy"} 8.0
cairn_gateway_time_to_first_token_seconds_count{provider="toy"} 8.0
cairn_gateway_time_to_first_token_seconds_sum{provider="toy"} 2.0
# HELP cairn_gateway_queue_depth Queue
# TYPE cairn_gateway_queue_depth gauge
cairn_gateway_queue_depth{model="toy"} 3.0
# HELP cairn_gateway_provider_up Up
# TYPE cairn_gateway_provider_up gauge
cairn_gateway_provider_up{model="toy"} 1.0
# HELP cairn_qs_fallbacks_total Fallbacks
# TYPE cairn_qs_fallbacks_total counter
cairn_qs_fallbacks_total{reason_code="NO_CONTEXT"} 1.0
"""


def frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def create_app() -> Starlette:
    stats: dict[str, Any] = {"chat": 0, "cancelled": 0, "completed": 0, "headers": {}}
    release = asyncio.Event()

    async def chat(request: Request) -> Response:
        body = await request.json()
        stats["chat"] += 1
        stats["headers"] = {k: v for k, v in request.headers.items() if k in ("x-request-id", "traceparent")}
        query = body.get("query", "")
        if not query:
            return JSONResponse(
                {"reason_code": "BAD_REQUEST", "message": "query is empty", "request_id": "fake"}, 400
            )
        if not body.get("stream"):
            return JSONResponse({"answer": f"echo: {query}", "status": "ok"}, headers={"X-Cache": "miss"})

        async def events() -> AsyncIterator[bytes]:
            finished = False
            try:
                yield frame("sources", {"sources": [{"chunk_id": "d:0", "text": "ünïcode text"}]})
                if "[[hold]]" in query:
                    await release.wait()
                    release.clear()
                for i in range(5):
                    if "[[break]]" in query and i == 2:
                        # Half a frame, then the connection goes away: what a crashed upstream looks like.
                        yield b'event: delta\ndata: {"te'
                        raise RuntimeError("upstream crashed")
                    yield frame("delta", {"text": f"part{i} "})
                yield frame("citations", {"citations": [{"chunk_id": "d:0"}]})
                yield frame("done", {"status": "ok", "stop_reason": "eos"})
                finished = True
            finally:
                stats["completed" if finished else "cancelled"] += 1

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Cache": "miss"})

    async def release_hold(request: Request) -> Response:
        release.set()
        return JSONResponse({"released": True})

    async def documents(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"documents": [], "total": 0, "query": str(request.query_params)})
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        return JSONResponse({"content_type": ctype, "bytes": len(raw), "chunks": 1, "id": "x"}, 201)

    async def document(request: Request) -> Response:
        return JSONResponse(
            {"id": request.path_params["doc_id"], "raw_path": request.scope["raw_path"].decode()}
        )

    async def chunk(request: Request) -> Response:
        return JSONResponse({"chunk_id": request.path_params["chunk_id"], "text": "chunk text"})

    async def models(request: Request) -> Response:
        toy = {"name": "toy", "file": None, "sha256": None, "licence": "none needed", "source": "toy.py"}
        data = [
            {"id": "toy", "default": True, "state": "loaded", "manifest": {**toy, "origin": "shipped"}},
            {"id": "remote", "state": "not_loaded", "reason_code": "PROVIDER_UNAVAILABLE", "manifest": None},
        ]
        return JSONResponse({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(METRICS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats)

    return Starlette(
        routes=[
            Route("/v1/chat", chat, methods=["POST"]),
            Route("/v1/documents", documents, methods=["GET", "POST"]),
            Route("/v1/documents/{doc_id}", document, methods=["GET", "DELETE"]),
            Route("/v1/chunks/{chunk_id}", chunk, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", healthz, methods=["GET"]),
            Route("/_release", release_hold, methods=["GET"]),
            Route("/_stats", get_stats, methods=["GET"]),
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")

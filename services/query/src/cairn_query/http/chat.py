"""`/v1/chat` and `/v1/hybrid-query`: one pipeline (chat/pipeline.py), rendered as JSON or as a stream."""

from __future__ import annotations

from functools import partial

from cairn_core import (
    BadRequest,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    EventStreamResponse,
    JSONResponse,
    MetaEvent,
    Reply,
    Stream,
    log_fields,
    request_id_of,
    trace_id_hex,
)
from starlette.requests import Request
from starlette.responses import Response

from cairn_query import schemas
from cairn_query.chat.hybrid import hybrid_query
from cairn_query.chat.render import render_json, render_sse
from cairn_query.chat.turn import Turn
from cairn_query.http.params import access, endpoint, owner_of, service_of

_route = partial(endpoint, tags="chat")


async def new_turn(request: Request, collection: str | None, question: str) -> Turn:
    """The audit record's start: who asks what (and may read what), under which request and trace."""
    svc = service_of(request)
    turn = Turn(svc.audit, request_id_of(request), trace_id_hex(), owner_of(request), collection, question)
    turn.access = await access(request)
    return turn


# `sources`, the gateway's `meta`/`delta`/`citations` relayed, and `done`; `fallback` before `done` when the
# answer cannot be shown (docs/query-service.md).
CHAT_STREAM = Stream(
    {
        "sources": [schemas.SourcesEvent],
        "meta": [MetaEvent],
        "delta": [DeltaEvent],
        "citations": [CitationsEvent],
        "fallback": [schemas.FallbackEvent],
        "redacted": [schemas.RedactedEvent],
        "warning": [schemas.PolicyWarning],
        "done": [DoneEvent],
    }
)


@_route("POST", "/v1/chat", Reply(schemas.ChatResponse, stream=CHAT_STREAM), body=schemas.ChatRequest)
async def chat(request: Request, body: schemas.ChatRequest) -> Response:
    """Grounded chat; a fallback is still 200; `stream: true` answers with SSE events"""
    return await answer(request, body, await new_turn(request, body.collection, body.question))


async def answer(request: Request, body: schemas.ChatRequest, turn: Turn) -> Response:
    """`body` answered as JSON or as a stream: the same events, two renderings. `turn` records the answer."""
    svc = service_of(request)
    events = svc.chat.run(body, turn, stream=body.stream)
    if body.stream:
        cached, frames = await render_sse(events, log_fields(request))
        svc.metrics.requests.labels("chat_stream", "started").inc()
        return EventStreamResponse(frames, headers={"X-Cache": "hit" if cached else "miss"})
    result = await render_json(events, request_id_of(request), log_fields(request))
    svc.metrics.requests.labels("chat", result.status).inc()
    return JSONResponse(result.model_dump(mode="json"), headers={"X-Cache": result.cache})


@_route("POST", "/v1/hybrid-query", schemas.HybridResponse, body=schemas.ChatRequest)
async def hybrid(request: Request, body: schemas.ChatRequest) -> Response:
    """Grounded answer plus a trust score"""
    svc = service_of(request)
    if body.stream:
        raise BadRequest("/v1/hybrid-query does not stream; use /v1/chat for streams.")
    result = await hybrid_query(svc.chat, body, await new_turn(request, body.collection, body.question))
    svc.metrics.requests.labels("hybrid_query", result.status).inc()
    return JSONResponse(result.model_dump(mode="json"))


ENDPOINTS = [chat, hybrid]

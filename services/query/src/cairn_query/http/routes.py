"""Thin handlers: parse, call the services, shape the response. A raised CairnError becomes its HTTP answer in
`cairn_core`'s exception handlers (installed by `service_app`)."""

from __future__ import annotations

import asyncio
from typing import Any

from cairn_core import (
    OWNER_HEADER,
    BadRequest,
    CairnError,
    EventStreamResponse,
    JSONDecodeError,
    JSONResponse,
    ReasonCode,
    format_validation_error,
    json_dumps,
    json_loads,
    log_fields,
    metrics_response,
    openapi_route,
    parse_json_body,
    request_id_of,
    require_bearer,
    trace_id_hex,
)
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cairn_query.chat.streaming import chat_events
from cairn_query.conversations.service import not_found
from cairn_query.corpus.documents import not_owner
from cairn_query.corpus.hybrid import hybrid_query
from cairn_query.governance.audit import Turn
from cairn_query.governance.policy import PolicyError
from cairn_query.http import connectors, openapi
from cairn_query.schemas import (
    ChatRequest,
    ConversationIn,
    DocumentBatchIn,
    DocumentIn,
    FeedbackIn,
    MessageIn,
    SearchRequest,
)
from cairn_query.store import OPERATOR, NotOwner
from cairn_query.store.audit import AuditQuery
from cairn_query.wiring import QueryService


def _svc(request: Request) -> QueryService:
    return request.app.state.service


def _owner(request: Request) -> str:
    """Who a write is for: the BFF names its client; a caller at QS itself is the operator."""
    owner = request.headers.get(OWNER_HEADER, "").strip()
    if len(owner) > 100:
        raise BadRequest(f"{OWNER_HEADER} must be at most 100 characters.")
    return owner or OPERATOR


async def _document_from_multipart(request: Request, svc: QueryService) -> DocumentIn:
    max_bytes = svc.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=20) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("Multipart upload needs a file in the field 'file'.")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BadRequest(
                f"The file exceeds the limit of {max_bytes} bytes.", ReasonCode.PAYLOAD_TOO_LARGE
            )
        filename = upload.filename or "upload.txt"
        content_type = upload.content_type
        fields: dict[str, Any] = {
            k: v for k in ("collection", "url", "id") if isinstance(v := form.get(k), str) and v
        }
        raw_meta = form.get("metadata")
        if isinstance(raw_meta, str) and raw_meta.strip():
            try:
                # orjson, as for JSON bodies: it refuses NaN, lone surrogates and deep nesting, where the
                # stdlib accepts the first two and overflows the stack on the third.
                fields["metadata"] = json_loads(raw_meta)
            except JSONDecodeError as exc:
                raise BadRequest(f"'metadata' must be a JSON object: {exc}") from None
        title = form.get("title")
        given_title = title if isinstance(title, str) and title else None
    text, found_title = await svc.parser.extract(filename, content_type, data)
    if not text.strip():
        raise BadRequest(f"No text could be extracted from {filename!r}.")
    fields["title"] = given_title or found_title or filename
    try:
        return DocumentIn.model_validate({**fields, "text": text})
    except ValidationError as exc:
        raise BadRequest(format_validation_error(exc)) from None


async def create_document(request: Request) -> Response:
    svc = _svc(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        doc = await _document_from_multipart(request, svc)
    elif ctype in ("application/json", ""):
        doc = await parse_json_body(request, DocumentIn)
    else:
        raise BadRequest(
            f"Send JSON or multipart/form-data, not {ctype!r}.", ReasonCode.UNSUPPORTED_MEDIA_TYPE
        )
    stored, created, changed = await svc.documents.ingest(doc, _owner(request))
    log_fields(request).update(document_id=stored["id"], chunks=stored["chunks"], changed=changed)
    return JSONResponse(
        {**stored, "created": created, "changed": changed}, status_code=201 if changed else 200
    )


async def create_batch(request: Request) -> Response:
    """Start a batch ingest job; 202 with its status at once (GET /v1/ingest/{job_id} follows it)."""
    svc = _svc(request)
    body = await parse_json_body(request, DocumentBatchIn)
    job = svc.documents.start_batch(body.documents, _owner(request))
    return JSONResponse(job.public(), status_code=202)


async def get_ingest_job(request: Request) -> Response:
    job = _svc(request).documents.jobs.get(request.path_params["job_id"], _owner(request))
    if job is None:
        raise CairnError(ReasonCode.NOT_FOUND, "No ingest job with this id (jobs are kept by the process).")
    return JSONResponse(job.public())


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²".isdigit() is true), and few enough that int() takes them (it refuses > 4,300).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)) or int(raw) > high:
        raise BadRequest(f"'{name}' must be an integer from 0 to {high}.")
    return int(raw)


async def list_documents(request: Request) -> Response:
    svc = _svc(request)
    collection = request.query_params.get("collection") or None
    limit = _int_param(request, "limit", 100, 1000)
    offset = _int_param(request, "offset", 0, 10**9)
    q = request.query_params.get("q", "").strip() or None
    if q is not None and len(q) > 200:
        raise BadRequest("'q' must be at most 200 characters.")
    docs, total = await asyncio.to_thread(svc.store.list_documents, collection, limit, offset, q)
    return JSONResponse({"documents": docs, "total": total})


async def list_collections(request: Request) -> Response:
    """The collections that hold documents, with how many each: what the page's collection picker offers."""
    collections = await asyncio.to_thread(_svc(request).store.list_collections)
    return JSONResponse({"collections": collections})


def _not_found(what: str, ident: str) -> CairnError:
    return CairnError(ReasonCode.NOT_FOUND, f"No {what} with id {ident!r}.")


async def get_document(request: Request) -> Response:
    doc_id = request.path_params["doc_id"]
    doc = await asyncio.to_thread(_svc(request).store.get_document, doc_id, True)
    if doc is None:
        raise _not_found("document", doc_id)
    return JSONResponse(doc)


async def delete_document(request: Request) -> Response:
    doc_id = request.path_params["doc_id"]
    try:
        n = await asyncio.to_thread(_svc(request).store.delete_document, doc_id, _owner(request))
    except NotOwner:
        raise not_owner(doc_id) from None
    if n is None:
        raise _not_found("document", doc_id)
    return JSONResponse({"id": doc_id, "deleted": True, "chunks": n})


async def get_chunk(request: Request) -> Response:
    chunk_id = request.path_params["chunk_id"]
    chunk = await asyncio.to_thread(_svc(request).store.get_chunk, chunk_id)
    if chunk is None:
        raise _not_found("chunk", chunk_id)
    return JSONResponse(chunk.public())


async def search(request: Request) -> Response:
    svc = _svc(request)
    body = await parse_json_body(request, SearchRequest)
    outcome = await svc.retriever.search(
        body.query, body.top_k or svc.settings.top_k, body.collection, body.filters
    )
    svc.metrics.requests.labels("search", "ok").inc()
    log_fields(request).update(mode=outcome.mode, results=len(outcome.hits))
    return JSONResponse(
        {
            "results": [h.public() for h in outcome.hits],
            "mode": outcome.mode,
            "took_ms": outcome.took_ms,
            "request_id": request_id_of(request),
        }
    )


async def chat(request: Request) -> Response:
    svc = _svc(request)
    body = await parse_json_body(request, ChatRequest)
    turn = Turn(
        svc.audit, request_id_of(request), trace_id_hex(), _owner(request), body.collection, body.question
    )
    return await _answer(request, svc, body, turn)


async def _answer(request: Request, svc: QueryService, body: ChatRequest, turn: Turn) -> Response:
    """Answer `body` as JSON or as a stream; `turn` records the answer (and keeps it, in a conversation)."""
    rid = request_id_of(request)
    fields = log_fields(request)
    if body.stream:
        prep = await svc.chat.start(body, turn)
        svc.metrics.requests.labels("chat_stream", "started").inc()
        return EventStreamResponse(
            chat_events(svc.chat, body, prep, turn, rid, fields),
            headers={"X-Cache": "hit" if prep.cached is not None else "miss"},
        )
    result = await svc.chat.answer(body, rid, turn)
    svc.metrics.requests.labels("chat", result["status"]).inc()
    fields.update(outcome=result["status"], reason_code=result["reason_code"], cache=result["cache"])
    return JSONResponse(result, headers={"X-Cache": result["cache"]})


# --- conversations and ratings (conversations.py) ----------------------------------------------------------


def _conversation_id(request: Request) -> str:
    conv_id = request.path_params["conv_id"]
    if not (conv_id.isascii() and conv_id.isalnum() and len(conv_id) <= 64):
        raise not_found(conv_id)
    return str(conv_id)


async def list_conversations(request: Request) -> Response:
    table = _svc(request).store.conversations
    limit, offset = _int_param(request, "limit", 50, 500), _int_param(request, "offset", 0, 10**9)
    rows, total = await asyncio.to_thread(table.of_owner, _owner(request), limit, offset)
    return JSONResponse({"conversations": rows, "total": total})


async def create_conversation(request: Request) -> Response:
    body = await parse_json_body(request, ConversationIn)
    conv = await asyncio.to_thread(_svc(request).store.conversations.create, _owner(request), body.title)
    return JSONResponse(conv, status_code=201)


async def get_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    conv = await asyncio.to_thread(_svc(request).store.conversations.get, _owner(request), conv_id)
    if conv is None:
        raise not_found(conv_id)
    return JSONResponse(conv)


async def rename_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    body = await parse_json_body(request, ConversationIn)
    table = _svc(request).store.conversations
    if not await asyncio.to_thread(table.rename, _owner(request), conv_id, body.title):
        raise not_found(conv_id)
    return JSONResponse(await asyncio.to_thread(table.get, _owner(request), conv_id))


async def delete_conversation(request: Request) -> Response:
    conv_id = _conversation_id(request)
    if not await asyncio.to_thread(_svc(request).store.conversations.delete, _owner(request), conv_id):
        raise not_found(conv_id)
    return JSONResponse({"id": conv_id, "deleted": True})


async def conversation_message(request: Request) -> Response:
    svc = _svc(request)
    conv_id = _conversation_id(request)
    message = await parse_json_body(request, MessageIn)
    turn = Turn(svc.audit, request_id_of(request), trace_id_hex(), _owner(request), message.collection, "")
    body = await svc.conversations.ask(_owner(request), conv_id, message, turn)
    log_fields(request).update(conversation=conv_id, regenerate=message.regenerate)
    return await _answer(request, svc, body, turn)


async def rate(request: Request) -> Response:
    svc = _svc(request)
    body = await parse_json_body(request, FeedbackIn)
    return JSONResponse(await svc.feedback.rate(body, _owner(request)))


async def feedback(request: Request) -> Response:
    svc = _admin(request)
    rating = request.query_params.get("rating") or None
    if rating not in (None, "up", "down"):
        raise BadRequest("'rating' is 'up' or 'down'.")
    limit, offset = _int_param(request, "limit", 50, 500), _int_param(request, "offset", 0, 10**9)
    return JSONResponse(await svc.feedback.listing(rating, limit, offset))


async def hybrid(request: Request) -> Response:
    svc = _svc(request)
    body = await parse_json_body(request, ChatRequest)
    if body.stream:
        raise BadRequest("/v1/hybrid-query does not stream; use /v1/chat for streams.")
    rid = request_id_of(request)
    turn = Turn(svc.audit, rid, trace_id_hex(), _owner(request), body.collection, body.question)
    result = await hybrid_query(svc, body, rid, turn)
    svc.metrics.requests.labels("hybrid_query", result["status"]).inc()
    return JSONResponse(result)


async def reembed(request: Request) -> Response:
    require_bearer(request, _svc(request).settings.admin_token, "QS_ADMIN_TOKEN")
    return JSONResponse(await _svc(request).documents.reembed())


# --- governance (docs/governance.md) --------------------------------------------------------------------


def _admin(request: Request) -> QueryService:
    svc = _svc(request)
    require_bearer(request, svc.settings.admin_token, "QS_ADMIN_TOKEN")
    return svc


async def get_policy(request: Request) -> Response:
    return JSONResponse(_admin(request).chat.policy.summary())


async def reload_policy(request: Request) -> Response:
    svc = _admin(request)
    try:
        policy = await svc.reload_policy()
    except PolicyError as exc:
        raise BadRequest(f"The policy was not changed: {exc}") from None
    return JSONResponse({"reloaded": True, **policy.summary()})


def _audit_query(request: Request) -> AuditQuery:
    p = request.query_params
    texts = {k: (p.get(k) or None) for k in ("since", "until", "outcome", "reason_code", "q", "request_id")}
    if any(v is not None and len(v) > 200 for v in texts.values()):
        raise BadRequest("Audit filters are at most 200 characters each.")
    after = p.get("after_id")
    return AuditQuery(
        **texts,
        limit=_int_param(request, "limit", 50, 500),
        after_id=_int_param(request, "after_id", 0, 10**15) if after else None,
    )


async def audit(request: Request) -> Response:
    """Newest first, `limit` a page; `next_after_id` continues. `format=jsonl` exports every match."""
    svc = _admin(request)
    query = _audit_query(request)
    if request.query_params.get("format") == "jsonl":

        async def lines() -> Any:
            page = AuditQuery(**{**query.__dict__, "limit": 500})
            while rows := await svc.audit.find(page):
                yield b"".join(json_dumps(r.record()) + b"\n" for r in rows)
                page.after_id = rows[-1].id

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="cairn-audit.jsonl"'},
        )
    rows = await svc.audit.find(query)
    more = len(rows) == query.limit
    records = await svc.feedback.attach([r.record() for r in rows])
    return JSONResponse({"records": records, "next_after_id": rows[-1].id if rows and more else None})


async def verify_audit(request: Request) -> Response:
    report = await _admin(request).audit.verify()
    return JSONResponse(report.public())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = _svc(request)
    try:
        stats = await asyncio.to_thread(svc.store.stats)
    except Exception as exc:  # the store is the one thing QS cannot work without
        return JSONResponse(
            {
                "status": "unavailable",
                "reason_code": ReasonCode.INTERNAL_ERROR.value,
                "message": f"The store is not usable: {type(exc).__name__}.",
                "request_id": request_id_of(request),
            },
            status_code=503,
        )
    circuit = "open" if svc.gateway.circuit_open else "closed"
    return JSONResponse({"status": "ready", **stats, "gateway_circuit": circuit})


async def metrics(request: Request) -> Response:
    svc = _svc(request)
    stats = await asyncio.to_thread(svc.store.stats)
    svc.metrics.documents.set(stats["documents"])
    svc.metrics.chunks.set(stats["chunks"])
    svc.metrics.circuit_open.set(1 if svc.gateway.circuit_open else 0)
    return metrics_response(svc.metrics.registry)


ROUTES = [
    Route("/v1/documents", create_document, methods=["POST"]),
    Route("/v1/documents", list_documents, methods=["GET"]),
    Route("/v1/documents/batch", create_batch, methods=["POST"]),
    Route("/v1/ingest/{job_id}", get_ingest_job, methods=["GET"]),
    Route("/v1/collections", list_collections, methods=["GET"]),
    Route("/v1/documents/{doc_id}", get_document, methods=["GET"]),
    Route("/v1/documents/{doc_id}", delete_document, methods=["DELETE"]),
    Route("/v1/chunks/{chunk_id}", get_chunk, methods=["GET"]),
    Route("/v1/search", search, methods=["POST"]),
    Route("/v1/chat", chat, methods=["POST"]),
    Route("/v1/hybrid-query", hybrid, methods=["POST"]),
    Route("/v1/conversations", list_conversations, methods=["GET"]),
    Route("/v1/conversations", create_conversation, methods=["POST"]),
    Route("/v1/conversations/{conv_id}", get_conversation, methods=["GET"]),
    Route("/v1/conversations/{conv_id}", rename_conversation, methods=["PATCH"]),
    Route("/v1/conversations/{conv_id}", delete_conversation, methods=["DELETE"]),
    Route("/v1/conversations/{conv_id}/messages", conversation_message, methods=["POST"]),
    Route("/v1/feedback", rate, methods=["POST"]),
    Route("/admin/feedback", feedback, methods=["GET"]),
    Route("/admin/reembed", reembed, methods=["POST"]),
    Route("/admin/policy", get_policy, methods=["GET"]),
    Route("/admin/policy/reload", reload_policy, methods=["POST"]),
    Route("/admin/audit", audit, methods=["GET"]),
    Route("/admin/audit/verify", verify_audit, methods=["GET"]),
    *connectors.ROUTES,
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    openapi_route(openapi.document),
]

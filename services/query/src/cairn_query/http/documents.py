"""Documents, chunks and search: ingest (JSON, a file, or a batch job), list, read, delete, re-embed."""

from __future__ import annotations

from functools import partial
from typing import Any

from cairn_core import (
    BadRequest,
    CairnError,
    JSONDecodeError,
    JSONResponse,
    Param,
    ReasonCode,
    Reply,
    format_validation_error,
    json_loads,
    log_fields,
    parse_json_body,
    request_id_of,
    require_bearer,
)
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from cairn_query import schemas
from cairn_query.corpus.parsing import original_of
from cairn_query.http.params import ADMIN, access, endpoint, owner_of, page, page_params, path_id, service_of
from cairn_query.wiring import QueryService

UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
        "title": {"type": "string"},
        "collection": {"type": "string"},
        "url": {"type": "string"},
        "id": {"type": "string"},
        "metadata": {"type": "string", "description": "a JSON object"},
    },
    "required": ["file"],
}


_route = partial(endpoint, tags="documents")
_admin = partial(endpoint, tags="admin", security=ADMIN)


_LISTING = [
    Param("collection", "query", {"type": "string"}),
    *page_params(100, 1000),
    Param("q", "query", {"type": "string", "maxLength": 200}),
]


@_route(
    "POST",
    "/v1/documents",
    {201: Reply(schemas.DocumentStored), 200: Reply(schemas.DocumentStored)},
    errors=(403, 415, 422, 507),
    body=schemas.DocumentIn,
    multipart=UPLOAD_FORM,
    parse_body=False,
)
async def create_document(request: Request) -> Response:
    """Ingest a document (JSON, or a file as multipart/form-data); 201 when stored anew, 200 when unchanged"""
    svc = service_of(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    original = None
    if ctype == "multipart/form-data":
        doc, original = await _document_from_multipart(request, svc)
    elif ctype in ("application/json", ""):
        doc = await parse_json_body(request, schemas.DocumentIn)
    else:
        raise BadRequest(
            f"Send JSON or multipart/form-data, not {ctype!r}.", ReasonCode.UNSUPPORTED_MEDIA_TYPE
        )
    await svc.documents.check_writer(await access(request), doc.collection)
    stored, created, changed = await svc.documents.ingest(doc, owner_of(request), original)
    log_fields(request).update(document_id=stored["id"], chunks=stored["chunks"], changed=changed)
    return JSONResponse(
        {**stored, "created": created, "changed": changed}, status_code=201 if changed else 200
    )


@_route(
    "POST",
    "/v1/documents/batch",
    {202: Reply(schemas.IngestJobOut)},
    errors=(403, 422),
    body=schemas.DocumentBatchIn,
)
async def create_batch(request: Request, body: schemas.DocumentBatchIn) -> Response:
    """Start a batch ingest job (documents in groups: chunked, embedded and written pipelined); 202 with its status

    Every collection of the batch is checked as a single upload's is (a writer of it, or its first writer)
    before anything is stored, so a job never stores half a batch the caller may not write. Its status is
    at GET /v1/ingest/{job_id}, for the caller who started it only."""
    svc = service_of(request)
    who = await access(request)
    for collection in sorted({d.collection for d in body.documents}):
        await svc.documents.check_writer(who, collection)
    job = svc.documents.start_batch(body.documents, owner_of(request), _job_viewer(request, who.user))
    log_fields(request).update(ingest_job=job.id, documents=len(body.documents))
    return JSONResponse(job.public(), status_code=202)


@_route("GET", "/v1/ingest/{job_id}", schemas.IngestJobOut, errors=(404,), params=[path_id("job_id")])
async def get_ingest_job(request: Request) -> Response:
    """A batch ingest job's progress: stored, unchanged (nothing re-embedded), failed with reason codes"""
    who = await access(request)
    job = service_of(request).documents.jobs.get(
        request.path_params["job_id"], _job_viewer(request, who.user)
    )
    if job is None:
        raise CairnError(ReasonCode.NOT_FOUND, "No ingest job with this id (jobs are kept by the process).")
    return JSONResponse(job.public())


def _job_viewer(request: Request, user: str | None) -> str:
    """Who may see a job: the client that started it and, behind the BFF, the user it named (two users of one
    client do not see each other's jobs: a job's failures name their documents)."""
    return f"{owner_of(request)}\n{user or ''}"


async def _document_from_multipart(
    request: Request, svc: QueryService
) -> tuple[schemas.DocumentIn, tuple[str, bytes] | None]:
    """The document in a multipart upload, and the file itself where QS keeps it (PDFs)."""
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
        doc = schemas.DocumentIn.model_validate({**fields, "text": text})
    except ValidationError as exc:
        raise BadRequest(format_validation_error(exc)) from None
    return doc, original_of(filename, content_type, data, svc.settings.max_original_bytes)


@_route("GET", "/v1/documents", schemas.DocumentList, errors=(400,), params=_LISTING)
async def list_documents(request: Request) -> Response:
    """List documents, newest first"""
    collection = request.query_params.get("collection") or None
    limit, offset = page(request, 100, 1000)
    q = request.query_params.get("q", "").strip() or None
    if q is not None and len(q) > 200:
        raise BadRequest("'q' must be at most 200 characters.")
    readable = (await access(request)).collections
    docs, total = await service_of(request).documents.listing(collection, limit, offset, q, readable)
    return JSONResponse({"documents": docs, "total": total})


@_route("GET", "/v1/collections", schemas.CollectionList)
async def list_collections(request: Request) -> Response:
    """The collections that hold documents, with their document counts

    The collections that hold documents, with how many each: what the page's collection picker offers."""
    readable = (await access(request)).collections
    return JSONResponse({"collections": await service_of(request).documents.collections(readable)})


@_route("GET", "/v1/documents/{doc_id}", schemas.DocumentDetail, errors=(404,), params=[path_id("doc_id")])
async def get_document(request: Request) -> Response:
    """A document with its text and chunk ids"""
    readable = (await access(request)).collections
    return JSONResponse(await service_of(request).documents.get(request.path_params["doc_id"], readable))


@_route(
    "GET",
    "/v1/documents/{doc_id}/original",
    Reply(media=["application/pdf"]),
    errors=(404,),
    params=[path_id("doc_id")],
)
async def get_original(request: Request) -> Response:
    """The uploaded file a document was read from, where it was kept (PDFs): open it at `#page=N`"""
    readable = (await access(request)).collections
    content_type, data = await service_of(request).documents.original(request.path_params["doc_id"], readable)
    # Only the types QS keeps (never HTML), shown inline, and never sniffed into something else.
    headers = {"content-disposition": "inline", "x-content-type-options": "nosniff"}
    return Response(data, media_type=content_type, headers=headers)


@_route(
    "DELETE", "/v1/documents/{doc_id}", schemas.DocumentDeleted, errors=(403, 404), params=[path_id("doc_id")]
)
async def delete_document(request: Request) -> Response:
    """Delete a document and its chunks"""
    doc_id = request.path_params["doc_id"]
    chunks = await service_of(request).documents.delete(doc_id, owner_of(request), await access(request))
    return JSONResponse({"id": doc_id, "deleted": True, "chunks": chunks})


@_route("GET", "/v1/chunks/{chunk_id}", schemas.ChunkOut, errors=(404,), params=[path_id("chunk_id")])
async def get_chunk(request: Request) -> Response:
    """One chunk"""
    readable = (await access(request)).collections
    return JSONResponse(await service_of(request).documents.chunk(request.path_params["chunk_id"], readable))


@endpoint("POST", "/v1/search", schemas.SearchResponse, body=schemas.SearchRequest, tags="search")
async def search(request: Request, body: schemas.SearchRequest) -> Response:
    """Hybrid search (BM25 and vectors, fused by rank)"""
    svc = service_of(request)
    top_k = body.top_k or svc.settings.top_k
    readable = (await access(request)).collections
    outcome = await svc.retriever.search(body.query, top_k, body.collection, body.filters, readable)
    svc.metrics.requests.labels("search", "ok").inc()
    log_fields(request).update(mode=outcome.mode, results=len(outcome.hits))
    results = [h.public() for h in outcome.hits]
    rid = request_id_of(request)
    return JSONResponse(
        {"results": results, "mode": outcome.mode, "took_ms": outcome.took_ms, "request_id": rid}
    )


@_admin("POST", "/admin/reembed", schemas.ReembedResult, errors=(401, 502, 503, 504))
async def reembed(request: Request) -> Response:
    """Re-embed every chunk with the gateway's embedder (Authorization: Bearer QS_ADMIN_TOKEN)"""
    require_bearer(request, service_of(request).settings.admin_token, "QS_ADMIN_TOKEN")
    return JSONResponse(await service_of(request).documents.reembed())


ENDPOINTS = [
    create_document,
    create_batch,
    get_ingest_job,
    list_documents,
    list_collections,
    get_document,
    get_original,
    delete_document,
    get_chunk,
    search,
    reembed,
]

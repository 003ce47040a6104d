"""The query service's `/openapi.json`: every route of routes.py, with the models it parses and answers with."""

from __future__ import annotations

from typing import Any

from cairn_core import (
    CONTRACT_VERSION,
    HEALTHZ,
    METRICS,
    CitationsEvent,
    DeltaEvent,
    DoneEvent,
    ErrorBody,
    MetaEvent,
    Operation,
    Param,
    Reply,
    Stream,
    openapi_document,
)

from .schemas import (
    AuditPage,
    AuditVerdict,
    ChatRequest,
    ChatResponse,
    ChunkOut,
    CollectionList,
    DocumentDeleted,
    DocumentDetail,
    DocumentIn,
    DocumentList,
    DocumentStored,
    FallbackEvent,
    HybridResponse,
    PolicyState,
    PolicyWarning,
    QueryReady,
    RedactedEvent,
    ReembedResult,
    SearchRequest,
    SearchResponse,
    SourcesEvent,
)

# `sources`, the gateway's `meta`/`delta`/`citations` relayed, and `done`; `fallback` before `done` when the
# answer cannot be shown (docs/query-service.md).
CHAT_STREAM = Stream(
    {
        "sources": [SourcesEvent],
        "meta": [MetaEvent],
        "delta": [DeltaEvent],
        "citations": [CitationsEvent],
        "fallback": [FallbackEvent],
        "redacted": [RedactedEvent],
        "warning": [PolicyWarning],
        "done": [DoneEvent],
    }
)

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


def _id(name: str) -> Param:
    return Param(name, "path", {"type": "string"}, required=True)


OPERATIONS = [
    Operation(
        "POST",
        "/v1/documents",
        "Ingest a document (JSON, or a file as multipart/form-data); 201 when stored anew, 200 when unchanged",
        {201: Reply(DocumentStored), 200: Reply(DocumentStored)},
        errors=(403, 415, 422, 507),
        body=DocumentIn,
        multipart=UPLOAD_FORM,
        tags=["documents"],
    ),
    Operation(
        "GET",
        "/v1/documents",
        "List documents, newest first",
        {200: Reply(DocumentList)},
        errors=(400,),
        params=[
            Param("collection", "query", {"type": "string"}),
            Param("limit", "query", {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}),
            Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
            Param("q", "query", {"type": "string", "maxLength": 200}),
        ],
        tags=["documents"],
    ),
    Operation(
        "GET",
        "/v1/collections",
        "The collections that hold documents, with their document counts",
        {200: Reply(CollectionList)},
        tags=["documents"],
    ),
    Operation(
        "GET",
        "/v1/documents/{doc_id}",
        "A document with its text and chunk ids",
        {200: Reply(DocumentDetail)},
        errors=(404,),
        params=[_id("doc_id")],
        tags=["documents"],
    ),
    Operation(
        "DELETE",
        "/v1/documents/{doc_id}",
        "Delete a document and its chunks",
        {200: Reply(DocumentDeleted)},
        errors=(403, 404),
        params=[_id("doc_id")],
        tags=["documents"],
    ),
    Operation(
        "GET",
        "/v1/chunks/{chunk_id}",
        "One chunk",
        {200: Reply(ChunkOut)},
        errors=(404,),
        params=[_id("chunk_id")],
        tags=["documents"],
    ),
    Operation(
        "POST",
        "/v1/search",
        "Hybrid search (BM25 and vectors, fused by rank)",
        {200: Reply(SearchResponse)},
        body=SearchRequest,
        tags=["search"],
    ),
    Operation(
        "POST",
        "/v1/chat",
        "Grounded chat; a fallback is still 200; `stream: true` answers with SSE events",
        {200: Reply(ChatResponse, stream=CHAT_STREAM)},
        body=ChatRequest,
        tags=["chat"],
    ),
    Operation(
        "POST",
        "/v1/hybrid-query",
        "Grounded answer plus a trust score",
        {200: Reply(HybridResponse)},
        body=ChatRequest,
        tags=["chat"],
    ),
    Operation(
        "POST",
        "/admin/reembed",
        "Re-embed every chunk with the gateway's embedder (Authorization: Bearer QS_ADMIN_TOKEN)",
        {200: Reply(ReembedResult)},
        errors=(401, 502, 503, 504),
        security=[{"adminBearer": []}],
        tags=["admin"],
    ),
    Operation(
        "GET",
        "/admin/policy",
        "The policy in force (Authorization: Bearer QS_ADMIN_TOKEN)",
        {200: Reply(PolicyState)},
        errors=(401,),
        security=[{"adminBearer": []}],
        tags=["admin"],
    ),
    Operation(
        "POST",
        "/admin/policy/reload",
        "Load QS_POLICY_FILE again; a broken file is refused (400, with its line) and the old policy stays",
        {200: Reply(PolicyState)},
        errors=(400, 401),
        security=[{"adminBearer": []}],
        tags=["admin"],
    ),
    Operation(
        "GET",
        "/admin/audit",
        "Audit records, newest first; `format=jsonl` exports every match as JSON lines",
        {200: Reply(AuditPage)},
        errors=(400, 401),
        params=[
            Param("since", "query", {"type": "string", "description": "ISO-8601 UTC, inclusive"}),
            Param("until", "query", {"type": "string", "description": "ISO-8601 UTC, exclusive"}),
            Param("outcome", "query", {"type": "string", "enum": ["ok", "fallback", "warn"]}),
            Param("reason_code", "query", {"type": "string"}),
            Param("q", "query", {"type": "string", "description": "text in the question, answer or ids"}),
            Param("request_id", "query", {"type": "string"}),
            Param("limit", "query", {"type": "integer", "minimum": 0, "maximum": 500, "default": 50}),
            Param("after_id", "query", {"type": "integer", "minimum": 0}),
            Param("format", "query", {"type": "string", "enum": ["json", "jsonl"]}),
        ],
        security=[{"adminBearer": []}],
        tags=["admin"],
    ),
    Operation(
        "GET",
        "/admin/audit/verify",
        "Check the audit log's hash chain from its anchor to its head",
        {200: Reply(AuditVerdict)},
        errors=(401,),
        security=[{"adminBearer": []}],
        tags=["admin"],
    ),
    HEALTHZ,
    Operation(
        "GET",
        "/readyz",
        "Readiness: the store answers",
        {200: Reply(QueryReady)},
        error_replies={503: Reply(ErrorBody, description="The store is not usable")},
        tags=["ops"],
    ),
    METRICS,
]


def document() -> dict[str, Any]:
    return openapi_document(
        "Cairn query service",
        CONTRACT_VERSION,
        OPERATIONS,
        guarded_errors=(401,),  # the internal token (cairn_core _auth), when it is set
        security_schemes={"adminBearer": {"type": "http", "scheme": "bearer"}},
    )

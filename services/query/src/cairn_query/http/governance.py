"""The policy in force and the audit log, for admins (Authorization: Bearer QS_ADMIN_TOKEN; docs/governance.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from cairn_core import BadRequest, JSONResponse, Param, Reply, json_dumps
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cairn_query.governance.policy import PolicyError
from cairn_query.http.params import ADMIN, admin_of, admin_service, endpoint, int_param
from cairn_query.schemas import AuditPage, AuditVerdict, PolicyState
from cairn_query.store.audit import AuditQuery
from cairn_query.wiring import QueryService

_AUDIT_KINDS = ("answer", "login", "permissions", "key", "retention", "all")
_AUDIT_FILTERS = [
    Param("since", "query", {"type": "string", "description": "ISO-8601 UTC, inclusive"}),
    Param("until", "query", {"type": "string", "description": "ISO-8601 UTC, exclusive"}),
    Param("outcome", "query", {"type": "string", "enum": ["ok", "fallback", "warn"]}),
    Param("reason_code", "query", {"type": "string"}),
    Param("q", "query", {"type": "string", "description": "text in the question, answer or ids"}),
    Param("request_id", "query", {"type": "string"}),
    Param("limit", "query", {"type": "integer", "minimum": 0, "maximum": 500, "default": 50}),
    Param("after_id", "query", {"type": "integer", "minimum": 0}),
    Param("format", "query", {"type": "string", "enum": ["json", "jsonl"]}),
    Param("kind", "query", {"type": "string", "enum": list(_AUDIT_KINDS), "default": "answer"}),
]


_admin = partial(endpoint, tags="admin", security=ADMIN)


@_admin("GET", "/admin/policy", PolicyState, errors=(401,))
async def get_policy(request: Request) -> Response:
    """The policy in force (Authorization: Bearer QS_ADMIN_TOKEN)"""
    return JSONResponse(admin_service(request).chat.policy.summary())


@_admin("POST", "/admin/policy/reload", PolicyState, errors=(400, 401))
async def reload_policy(request: Request) -> Response:
    """Load QS_POLICY_FILE again; a broken file is refused (400, with its line) and the old policy stays"""
    svc = admin_service(request)
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
    kind = p.get("kind") or "answer"
    if kind not in _AUDIT_KINDS:
        raise BadRequest(f"'kind' is one of {', '.join(_AUDIT_KINDS)}.")
    return AuditQuery(
        kind=kind,
        **texts,
        limit=int_param(request, "limit", 50, 500),
        after_id=int_param(request, "after_id", 0, 10**15) if after else None,
    )


@_admin(
    "GET",
    "/admin/audit",
    Reply(AuditPage, media=["application/x-ndjson"]),
    errors=(400, 401),
    params=_AUDIT_FILTERS,
)
async def audit(request: Request) -> Response:
    """Audit records, newest first; `format=jsonl` exports every match as JSON lines

    Newest first, `limit` a page; `next_after_id` continues. `format=jsonl` exports every match."""
    svc = await admin_of(request)
    query = _audit_query(request)
    if request.query_params.get("format") == "jsonl":
        return StreamingResponse(
            _audit_lines(svc, query),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="cairn-audit.jsonl"'},
        )
    rows = await svc.audit.find(query)
    more = len(rows) == query.limit
    records = await svc.feedback.attach([r.record() for r in rows])
    return JSONResponse({"records": records, "next_after_id": rows[-1].id if rows and more else None})


async def _audit_lines(svc: QueryService, query: AuditQuery) -> AsyncIterator[bytes]:
    page = AuditQuery(**{**query.__dict__, "limit": 500})
    while rows := await svc.audit.find(page):
        yield b"".join(json_dumps(r.record()) + b"\n" for r in rows)
        page.after_id = rows[-1].id


@_admin("GET", "/admin/audit/verify", AuditVerdict, errors=(401,))
async def verify_audit(request: Request) -> Response:
    """Check the audit log's hash chain from its anchor to its head"""
    report = await (await admin_of(request)).audit.verify()
    return JSONResponse(report.public())


ENDPOINTS = [get_policy, reload_policy, audit, verify_audit]

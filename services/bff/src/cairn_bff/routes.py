"""Thin handlers: the page, `/api/*` forwarded to QS or the gateway, the dashboard JSON, health and metrics."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from cairn_core import (
    HEALTHZ,
    METRICS,
    OWNER_HEADER,
    BadRequest,
    Endpoint,
    ErrorBody,
    JSONResponse,
    ReasonCode,
    Reply,
    error_response,
    metrics_response,
    parse_json_body,
    request_id_of,
)
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from . import dashboard as dash
from . import oidc, permissions
from .openapi import OPENAPI, Files, endpoint, proxied
from .proxy import Upstream
from .schemas import BffReady, ChatProxyRequest

STATIC_DIR = Path(__file__).parent / "static"
_NO_CACHE = {"Cache-Control": "no-cache"}


def _qs(request: Request) -> Upstream:
    return request.app.state.qs


def _gateway(request: Request) -> Upstream:
    return request.app.state.gateway


def _owner(request: Request) -> dict[str, str]:
    # Set by the API guard; QS lets only the owner of a document id overwrite or delete it.
    owner = getattr(request.state, "owner", None)
    return {OWNER_HEADER: owner} if owner else {}


def _conversation_owner(request: Request) -> dict[str, str]:
    """Who is answered, and so who owns a conversation and may rate an answer: the API key, else this
    browser's session cookie, else (a local tool without cookies) the local user."""
    owner = getattr(request.state, "owner", None)
    session = request.cookies.get(SESSION_COOKIE)
    if owner == "local" and session:
        owner = "session:" + hashlib.sha256(session.encode()).hexdigest()[:16]
    return {OWNER_HEADER: owner} if owner else {}


def _segment(request: Request, name: str) -> str:
    # Path parameters are decoded by Starlette; encode again so an id can never change the upstream path.
    return quote(request.path_params[name], safe="")


# --- the page ------------------------------------------------------------------------------------------------


SESSION_COOKIE = "cairn_session"
_PAGE = Reply(media=["text/html"])


@endpoint("GET", "/", _PAGE, tags="page")
async def index(request: Request) -> Response:
    """The chat page"""
    response = FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)
    if not request.cookies.get(SESSION_COOKIE):
        # In local mode, conversations belong to this browser: the cookie names it (never sent to scripts).
        response.set_cookie(
            SESSION_COOKIE, secrets.token_urlsafe(24), max_age=365 * 86400, httponly=True, samesite="strict"
        )
    return response


@endpoint("GET", "/dashboard", _PAGE, tags="page")
async def dashboard_page(request: Request) -> Response:
    """The dashboard page"""
    return FileResponse(STATIC_DIR / "dashboard.html", headers=_NO_CACHE)


@endpoint("GET", "/audit", _PAGE, tags="page")
async def audit_page(request: Request) -> Response:
    """The audit log page (its data needs the admin key)"""
    # The page holds no data: what it shows comes from /api/admin/audit, which needs the admin key.
    return FileResponse(STATIC_DIR / "audit.html", headers=_NO_CACHE)


# --- /api: chat, documents, chunks, search, models -------------------------------------------------------------


@proxied("/api/chat", "qs", "/v1/chat", "POST")
async def chat(request: Request) -> Response:
    # The owner names the asker in QS's audit log: the key's fingerprint, or "local" (never the key).
    return await _ask(request, "/v1/chat", _conversation_owner(request))


async def _ask(request: Request, path: str, owner: dict[str, str]) -> Response:
    """A question to QS, relayed as a stream or answered whole, as its `stream` field says."""
    body = await request.body()
    parsed = await parse_json_body(request, ChatProxyRequest)  # 400 on non-JSON; the rest is QS's to check
    if parsed.stream:
        return await _qs(request).open_stream(request, path, body, owner)
    return await _qs(request).forward(
        request, "POST", path, content=body, content_type="application/json", extra_headers=owner
    )


@proxied("/api/documents", "qs", "/v1/documents", "GET", "POST")
async def documents(request: Request) -> Response:
    qs = _qs(request)
    if request.method == "GET":
        return await qs.forward(request, "GET", "/v1/documents", params=request.query_params.multi_items())
    ctype = request.headers.get("content-type")
    if not ctype:
        raise BadRequest("Upload a file as multipart/form-data (field 'file') or send a JSON document.")
    # Read whole (bounded by BFF_MAX_BODY_BYTES) so the upload reaches QS with its own Content-Length.
    return await qs.forward(
        request,
        "POST",
        "/v1/documents",
        content=await request.body(),
        content_type=ctype,
        extra_headers=_owner(request),
    )


@proxied("/api/documents/{doc_id}", "qs", "/v1/documents/{doc_id}", "GET", "DELETE")
async def document(request: Request) -> Response:
    path = f"/v1/documents/{_segment(request, 'doc_id')}"
    return await _qs(request).forward(request, request.method, path, extra_headers=_owner(request))


# The kept PDF is the uploader's file, served from the page's origin: never sniffed, never framed, and its
# own policy, which lets the browser's PDF viewer (a plugin, which the page's `object-src 'none'` blocks) run.
_ORIGINAL_HEADERS = {
    "content-security-policy": "default-src 'none'; object-src 'self'; frame-ancestors 'none'",
    "content-disposition": "inline",
}


@proxied("/api/documents/{doc_id}/original", "qs", "/v1/documents/{doc_id}/original", "GET")
async def original(request: Request) -> Response:
    path = f"/v1/documents/{_segment(request, 'doc_id')}/original"
    resp = await _qs(request).forward(request, "GET", path)
    if resp.status_code == 200:
        resp.headers.update(_ORIGINAL_HEADERS)
    return resp


@proxied("/api/collections", "qs", "/v1/collections", "GET")
async def collections(request: Request) -> Response:
    return await _qs(request).forward(request, "GET", "/v1/collections")


@proxied("/api/chunks/{chunk_id}", "qs", "/v1/chunks/{chunk_id}", "GET")
async def chunk(request: Request) -> Response:
    return await _qs(request).forward(request, "GET", f"/v1/chunks/{_segment(request, 'chunk_id')}")


@proxied("/api/search", "qs", "/v1/search", "POST")
async def search(request: Request) -> Response:
    body = await request.body()
    return await _qs(request).forward(
        request, "POST", "/v1/search", content=body, content_type="application/json"
    )


@proxied("/api/models", "gateway", "/v1/models", "GET")
async def models(request: Request) -> Response:
    return await _gateway(request).forward(request, "GET", "/v1/models")


@proxied("/api/status", "gateway", "/readyz", "GET")
async def model_status(request: Request) -> Response:
    """The gateway's readiness as the page's banner shows it: ready, degraded (answers come from the fallback
    chain; on a first run, while llama.cpp compiles) with the reason, or unavailable."""
    return await _gateway(request).forward(request, "GET", "/readyz")


# --- /api/conversations and /api/feedback -------------------------------------------------------------------


@proxied("/api/conversations", "qs", "/v1/conversations", "GET", "POST")
async def conversations(request: Request) -> Response:
    qs, owner = _qs(request), _conversation_owner(request)
    if request.method == "GET":
        params = request.query_params.multi_items()
        return await qs.forward(request, "GET", "/v1/conversations", params=params, extra_headers=owner)
    body = await request.body()
    return await qs.forward(
        request,
        "POST",
        "/v1/conversations",
        content=body,
        content_type="application/json",
        extra_headers=owner,
    )


@proxied("/api/conversations/{conv_id}", "qs", "/v1/conversations/{conv_id}", "GET", "PATCH", "DELETE")
async def conversation(request: Request) -> Response:
    path = f"/v1/conversations/{_segment(request, 'conv_id')}"
    body = await request.body() if request.method == "PATCH" else None
    ctype = "application/json" if body is not None else None
    return await _qs(request).forward(
        request,
        request.method,
        path,
        content=body,
        content_type=ctype,
        extra_headers=_conversation_owner(request),
    )


@proxied("/api/conversations/{conv_id}/messages", "qs", "/v1/conversations/{conv_id}/messages", "POST")
async def conversation_message(request: Request) -> Response:
    path = f"/v1/conversations/{_segment(request, 'conv_id')}/messages"
    return await _ask(request, path, _conversation_owner(request))


@proxied("/api/feedback", "qs", "/v1/feedback", "POST")
async def feedback(request: Request) -> Response:
    body = await request.body()
    return await _qs(request).forward(
        request,
        "POST",
        "/v1/feedback",
        content=body,
        content_type="application/json",
        # Only the one who was answered may rate an answer (QS checks): the same owner the answer went to.
        extra_headers=_conversation_owner(request),
    )


# --- /api/admin: the audit log, for the operator (the guard admits the admin key only) ------------------------


def _qs_admin(request: Request) -> dict[str, str]:
    token = request.app.state.settings.qs_admin_token
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}


async def _admin_get(request: Request, path: str) -> Response:
    params = request.query_params.multi_items()
    return await _qs(request).forward(request, "GET", path, params=params, extra_headers=_qs_admin(request))


@proxied("/api/admin/audit", "qs", "/admin/audit", "GET")
async def admin_audit(request: Request) -> Response:
    return await _admin_get(request, "/admin/audit")


@proxied("/api/admin/feedback", "qs", "/admin/feedback", "GET")
async def admin_feedback(request: Request) -> Response:
    return await _admin_get(request, "/admin/feedback")


@proxied("/api/admin/audit/verify", "qs", "/admin/audit/verify", "GET")
async def admin_audit_verify(request: Request) -> Response:
    return await _admin_get(request, "/admin/audit/verify")


# --- /api/connectors: connector sources, for the operator (the guard admits the admin key only) -------------


def _connectors(suffix: str) -> Callable[[Request], Awaitable[Response]]:
    """A handler forwarding `/api/connectors[/{name}]<suffix>` to QS's `/v1/connectors…` with its admin token."""

    async def forward(request: Request) -> Response:
        name = f"/{_segment(request, 'name')}" if "name" in request.path_params else ""
        body = await request.body() if request.method in ("POST", "PATCH") else None
        return await _qs(request).forward(
            request,
            request.method,
            f"/v1/connectors{name}{suffix}",
            content=body,
            params=request.query_params.multi_items(),
            content_type="application/json" if body else None,
            extra_headers=_qs_admin(request),
        )

    return forward


# --- operations ----------------------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@endpoint(
    "GET",
    "/readyz",
    BffReady,
    tags="ops",
    error_replies={503: Reply(ErrorBody, description="The query service is not reachable")},
)
async def readyz(request: Request) -> Response:
    """Readiness: the query service is ready

    Ready when QS is ready (its store answers): without QS the page can do nothing useful. QS is ready
    without the gateway, because it degrades to search results; so is the BFF."""
    try:
        await _qs(request).get_text("/readyz", request.app.state.settings.metrics_timeout_s)
    except Exception as exc:
        return error_response(
            ReasonCode.PROVIDER_UNAVAILABLE,
            f"The query service is not reachable: {type(exc).__name__}.",
            request_id_of(request),
            status="unavailable",
        )
    return JSONResponse({"status": "ready", "query_service": "up"})


async def metrics(request: Request) -> Response:
    return metrics_response(request.app.state.metrics.registry)


# Own operations and proxied ones each appear in /openapi.json in this order (openapi.document).
ROUTES: list[BaseRoute] = [
    index,
    dashboard_page,
    audit_page,
    chat,
    documents,
    document,
    original,
    collections,
    chunk,
    search,
    models,
    model_status,
    dash.dashboard_data,
    conversations,
    conversation,
    conversation_message,
    feedback,
    admin_feedback,
    dash.dashboard_series,
    admin_audit,
    admin_audit_verify,
    *permissions.ROUTES,
    proxied("/api/connectors", "qs", "/v1/connectors", "GET", "POST")(_connectors("")),
    proxied("/api/connectors/{name}", "qs", "/v1/connectors/{name}", "GET", "PATCH", "DELETE")(
        _connectors("")
    ),
    proxied("/api/connectors/{name}/run", "qs", "/v1/connectors/{name}/run", "POST")(_connectors("/run")),
    proxied("/api/connectors/{name}/status", "qs", "/v1/connectors/{name}/status", "GET")(
        _connectors("/status")
    ),
    *oidc.ROUTES,
    Endpoint(healthz, HEALTHZ),
    readyz,
    Endpoint(metrics, METRICS),
    OPENAPI,
    Files("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
]

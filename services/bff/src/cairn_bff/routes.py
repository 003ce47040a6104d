"""Thin handlers: the page, `/api/*` forwarded to QS or the gateway, the dashboard JSON, health and metrics."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from cairn_core import (
    OWNER_HEADER,
    BadRequest,
    JSONResponse,
    ReasonCode,
    error_response,
    metrics_response,
    parse_json_body,
    request_id_of,
)
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import dashboard as dash
from . import openapi
from .proxy import Upstream
from .schemas import ChatProxyRequest

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


async def index(request: Request) -> Response:
    response = FileResponse(STATIC_DIR / "index.html", headers=_NO_CACHE)
    if not request.cookies.get(SESSION_COOKIE):
        # In local mode, conversations belong to this browser: the cookie names it (never sent to scripts).
        response.set_cookie(
            SESSION_COOKIE, secrets.token_urlsafe(24), max_age=365 * 86400, httponly=True, samesite="strict"
        )
    return response


async def dashboard_page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "dashboard.html", headers=_NO_CACHE)


async def audit_page(request: Request) -> Response:
    # The page holds no data: what it shows comes from /api/admin/audit, which needs the admin key.
    return FileResponse(STATIC_DIR / "audit.html", headers=_NO_CACHE)


# --- /api: chat, documents, chunks, search, models -------------------------------------------------------------


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


async def document(request: Request) -> Response:
    path = f"/v1/documents/{_segment(request, 'doc_id')}"
    return await _qs(request).forward(request, request.method, path, extra_headers=_owner(request))


async def collections(request: Request) -> Response:
    return await _qs(request).forward(request, "GET", "/v1/collections")


async def chunk(request: Request) -> Response:
    return await _qs(request).forward(request, "GET", f"/v1/chunks/{_segment(request, 'chunk_id')}")


async def search(request: Request) -> Response:
    body = await request.body()
    return await _qs(request).forward(
        request, "POST", "/v1/search", content=body, content_type="application/json"
    )


async def models(request: Request) -> Response:
    return await _gateway(request).forward(request, "GET", "/v1/models")


async def model_status(request: Request) -> Response:
    """The gateway's readiness as the page's banner shows it: ready, degraded (answers come from the fallback
    chain; on a first run, while llama.cpp compiles) with the reason, or unavailable."""
    return await _gateway(request).forward(request, "GET", "/readyz")


async def dashboard_data(request: Request) -> Response:
    """One poll of the dashboard: every service's /metrics, summarised, and the gateway's models with their
    manifests; a service that is down shows as down."""
    timeout = request.app.state.settings.metrics_timeout_s
    gw, qs, models = await asyncio.gather(
        _gateway(request).get_text("/metrics", timeout),
        _qs(request).get_text("/metrics", timeout),
        _gateway(request).get_text("/v1/models", timeout),
        return_exceptions=True,
    )
    own = dash.parse(bytes(metrics_response(request.app.state.metrics.registry).body).decode())
    return JSONResponse(
        {
            "at": time.time(),
            "gateway": {
                "up": True,
                **dash.gateway_summary(dash.parse(gw)),
                "models": dash.model_manifests(models) if isinstance(models, str) else [],
            }
            if isinstance(gw, str)
            else {"up": False, "error": type(gw).__name__},
            "query": {"up": True, **dash.query_summary(dash.parse(qs))}
            if isinstance(qs, str)
            else {"up": False, "error": type(qs).__name__},
            "bff": dash.bff_summary(own),
        },
        headers=_NO_CACHE,
    )


# --- /api/conversations and /api/feedback -------------------------------------------------------------------


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


async def conversation_message(request: Request) -> Response:
    path = f"/v1/conversations/{_segment(request, 'conv_id')}/messages"
    return await _ask(request, path, _conversation_owner(request))


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


async def dashboard_series(request: Request) -> Response:
    """The charts' points from the history the sampler keeps (history.py): nothing is scraped here. With
    `?since=<t>` only the points after `t` (a point's `t`), so a page that has the hour asks for what is new."""
    settings = request.app.state.settings
    since = request.query_params.get("since") or "-inf"
    try:
        after = float(since)
    except ValueError:
        after = math.nan
    if math.isnan(after) or after == math.inf:
        raise BadRequest("since must be a time in seconds since the epoch (a point's t).")
    points, source = await request.app.state.history.points()
    # Never older than the history, even if Redis still holds points of a deployment that stopped a while ago.
    after = max(after, time.time() - settings.dashboard_history_s)
    return JSONResponse(
        {
            "sample_s": settings.dashboard_sample_s,
            "history_s": settings.dashboard_history_s,
            "source": source,
            "points": [p for p in points if p["t"] > after],
        },
        headers=_NO_CACHE,
    )


# --- /api/admin: the audit log, for the operator (the guard admits the admin key only) ------------------------


def _qs_admin(request: Request) -> dict[str, str]:
    token = request.app.state.settings.qs_admin_token
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}


async def _admin_get(request: Request, path: str) -> Response:
    params = request.query_params.multi_items()
    return await _qs(request).forward(request, "GET", path, params=params, extra_headers=_qs_admin(request))


async def admin_audit(request: Request) -> Response:
    return await _admin_get(request, "/admin/audit")


async def admin_feedback(request: Request) -> Response:
    return await _admin_get(request, "/admin/feedback")


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


async def readyz(request: Request) -> Response:
    """Ready when QS is ready (its store answers): without QS the page can do nothing useful. QS is ready
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


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard", dashboard_page, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/documents", documents, methods=["GET", "POST"]),
    Route("/api/documents/{doc_id}", document, methods=["GET", "DELETE"]),
    Route("/api/collections", collections, methods=["GET"]),
    Route("/api/chunks/{chunk_id}", chunk, methods=["GET"]),
    Route("/api/search", search, methods=["POST"]),
    Route("/api/models", models, methods=["GET"]),
    Route("/api/status", model_status, methods=["GET"]),
    Route("/api/dashboard", dashboard_data, methods=["GET"]),
    Route("/api/conversations", conversations, methods=["GET", "POST"]),
    Route("/api/conversations/{conv_id}", conversation, methods=["GET", "PATCH", "DELETE"]),
    Route("/api/conversations/{conv_id}/messages", conversation_message, methods=["POST"]),
    Route("/api/feedback", feedback, methods=["POST"]),
    Route("/api/admin/feedback", admin_feedback, methods=["GET"]),
    Route("/api/dashboard/series", dashboard_series, methods=["GET"]),
    Route("/api/admin/audit", admin_audit, methods=["GET"]),
    Route("/api/admin/audit/verify", admin_audit_verify, methods=["GET"]),
    Route("/api/connectors", _connectors(""), methods=["GET", "POST"]),
    Route("/api/connectors/{name}", _connectors(""), methods=["GET", "PATCH", "DELETE"]),
    Route("/api/connectors/{name}/run", _connectors("/run"), methods=["POST"]),
    Route("/api/connectors/{name}/status", _connectors("/status"), methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi.openapi, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
]

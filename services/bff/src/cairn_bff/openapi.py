"""The BFF's `/openapi.json`: its own routes, plus the `/api` routes it proxies, described by QS and the gateway.

The BFF forwards `/api/*` bodies byte for byte and does not import the upstream services (its pyproject names
only cairn-core), so it does not restate their models: it reads the upstreams' own `/openapi.json` once, copies
the operations it proxies under their `/api` paths and adds what the BFF itself can answer on the way (401 and
429 from the guard, 502-504 when an upstream cannot be reached, the `error` frame that ends a broken stream).
"""

from __future__ import annotations

import copy
from typing import Any

from cairn_core import (
    CONTRACT_VERSION,
    EVENT_STREAM,
    HEALTHZ,
    METRICS,
    CairnError,
    ErrorBody,
    ErrorEvent,
    JSONResponse,
    Operation,
    Param,
    ReasonCode,
    Reply,
    json_loads,
    openapi_document,
    operation_id,
)
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from .auth import ADMIN_PREFIXES
from .schemas import BffReady, DashboardData, DashboardSeries

REF = "#/components/schemas/{model}"
# (upstream, its path, the BFF's path, methods): routes.py forwards each of these.
PROXIED = [
    ("qs", "/v1/chat", "/api/chat", ("post",)),
    ("qs", "/v1/documents", "/api/documents", ("get", "post")),
    ("qs", "/v1/documents/{doc_id}", "/api/documents/{doc_id}", ("get", "delete")),
    ("qs", "/v1/collections", "/api/collections", ("get",)),
    ("qs", "/v1/chunks/{chunk_id}", "/api/chunks/{chunk_id}", ("get",)),
    ("qs", "/v1/search", "/api/search", ("post",)),
    ("gateway", "/v1/models", "/api/models", ("get",)),
    ("gateway", "/readyz", "/api/status", ("get",)),
    ("qs", "/v1/conversations", "/api/conversations", ("get", "post")),
    ("qs", "/v1/conversations/{conv_id}", "/api/conversations/{conv_id}", ("get", "patch", "delete")),
    ("qs", "/v1/conversations/{conv_id}/messages", "/api/conversations/{conv_id}/messages", ("post",)),
    ("qs", "/v1/feedback", "/api/feedback", ("post",)),
    ("qs", "/admin/feedback", "/api/admin/feedback", ("get",)),
    ("qs", "/admin/audit", "/api/admin/audit", ("get",)),
    ("qs", "/admin/audit/verify", "/api/admin/audit/verify", ("get",)),
    ("qs", "/v1/connectors", "/api/connectors", ("get", "post")),
    ("qs", "/v1/connectors/{name}", "/api/connectors/{name}", ("get", "patch", "delete")),
    ("qs", "/v1/connectors/{name}/run", "/api/connectors/{name}/run", ("post",)),
    ("qs", "/v1/connectors/{name}/status", "/api/connectors/{name}/status", ("get",)),
]
# Local mode admits loopback without a key (docs/bff.md), hence the empty requirement first.
API_SECURITY: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}, {"apiKey": []}]
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}]  # /api/admin/*: the admin key only
SECURITY_SCHEMES = {
    "adminKey": {"type": "http", "scheme": "bearer", "description": "BFF_ADMIN_KEY"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "one of BFF_API_KEYS"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "one of BFF_API_KEYS"},
}
# 403: a Host the BFF does not serve (security.py); 401 and 429: the API guard (auth.py).
_GUARD_ERRORS = (401, 403, 429, 502, 503, 504)

OWN = [
    Operation("GET", "/", "The chat page", {200: Reply(media=["text/html"])}, tags=["page"]),
    Operation("GET", "/dashboard", "The dashboard page", {200: Reply(media=["text/html"])}, tags=["page"]),
    Operation(
        "GET",
        "/audit",
        "The audit log page (its data needs the admin key)",
        {200: Reply(media=["text/html"])},
        tags=["page"],
    ),
    Operation(
        "GET",
        "/api/dashboard",
        "One poll of the dashboard: every service's metrics, summarised",
        {200: Reply(DashboardData)},
        errors=(401, 429),
        security=API_SECURITY,
        tags=["dashboard"],
    ),
    Operation(
        "GET",
        "/api/dashboard/series",
        "The dashboard's charts: one point per sampling interval over the last hour (`?since=` for newer)",
        {200: Reply(DashboardSeries)},
        errors=(400, 401, 429),
        params=[Param("since", "query", {"type": "number"}, description="only points with a larger `t`")],
        security=API_SECURITY,
        tags=["dashboard"],
    ),
    HEALTHZ,
    Operation(
        "GET",
        "/readyz",
        "Readiness: the query service is ready",
        {200: Reply(BffReady)},
        error_replies={503: Reply(ErrorBody, description="The query service is not reachable")},
        tags=["ops"],
    ),
    METRICS,
]


def merge(upstreams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The BFF's document from the upstreams' documents (`{"qs": ..., "gateway": ...}`)."""
    doc = openapi_document("Cairn BFF", CONTRACT_VERSION, OWN, security_schemes=SECURITY_SCHEMES)
    components = doc["components"]["schemas"]
    _, extra = models_json_schema([(ErrorEvent, "serialization")], ref_template=REF)
    _add_components(components, extra.get("$defs", {}))
    for name, upstream_path, path, methods in PROXIED:
        source = upstreams[name]
        _add_components(components, source.get("components", {}).get("schemas", {}))
        for method in methods:
            op = copy.deepcopy(source["paths"][upstream_path][method])
            op["operationId"] = operation_id(method, path)
            op["security"] = ADMIN_SECURITY if path.startswith(ADMIN_PREFIXES) else API_SECURITY
            for status in _GUARD_ERRORS:
                op["responses"].setdefault(str(status), _error_response())
            _allow_error_frame(op)
            doc["paths"].setdefault(path, {})[method] = op
    return doc


def _add_components(into: dict[str, Any], schemas: dict[str, Any]) -> None:
    for key, schema in schemas.items():
        if key in into and into[key] != schema:
            # Two services named different models alike: the merged document would be wrong, so say so.
            raise RuntimeError(f"OpenAPI component {key!r} differs between the BFF's upstreams")
        into[key] = schema


def _error_response() -> dict[str, Any]:
    schema = {"$ref": REF.format(model="ErrorBody")}
    return {"description": "Error", "content": {"application/json": {"schema": schema}}}


def _allow_error_frame(op: dict[str, Any]) -> None:
    """The relay ends a stream that broke off with `error` and `done` of its own (proxy.terminal_frames)."""
    stream = op["responses"].get("200", {}).get("content", {}).get(EVENT_STREAM)
    if stream is None:
        return
    data = {"contentMediaType": "application/json", "contentSchema": {"$ref": REF.format(model="ErrorEvent")}}
    error = {
        "type": "object",
        "properties": {"event": {"const": "error"}, "data": data},
        "required": ["event", "data"],
    }
    item = stream["itemSchema"]
    stream["itemSchema"] = {"oneOf": [*item["oneOf"], error]} if "oneOf" in item else {"oneOf": [item, error]}


async def openapi(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        timeout = state.settings.metrics_timeout_s
        try:
            upstreams = {
                "qs": json_loads(await state.qs.get_text("/openapi.json", timeout)),
                "gateway": json_loads(await state.gateway.get_text("/openapi.json", timeout)),
            }
        except Exception as exc:
            # Not cached: the next request tries again once the upstreams are back.
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                f"The upstream API descriptions are not reachable: {type(exc).__name__}.",
            ) from None
        state.openapi = bytes(JSONResponse(merge(upstreams)).body)
    return Response(state.openapi, media_type="application/json")

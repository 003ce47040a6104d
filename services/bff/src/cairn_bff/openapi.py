"""The BFF's `/openapi.json`, built from its whole route table: each route declares its operation beside its
handler, and a route without one makes the document raise (`include_in_schema=False` opts one out).

Two kinds of route. `@endpoint` is one the BFF answers itself (a page, the dashboard, login, the probes): a
`cairn_core.Endpoint` whose `Operation` the BFF states. `@proxied` is one it forwards byte for byte to QS or
the gateway: the BFF does not import the upstream services (its pyproject names only cairn-core), so it does
not restate their models; the route names the upstream operation, and the document copies it from the
upstream's own `/openapi.json` (read once) under the BFF's path, adding what the BFF itself can answer on the
way (401 and 429 from the guard, 502-504 when an upstream cannot be reached, the `error` frame that ends a
broken stream).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from cairn_core import (
    CONTRACT_VERSION,
    EVENT_STREAM,
    CairnError,
    Endpoint,
    ErrorEvent,
    JSONResponse,
    Operation,
    ReasonCode,
    Reply,
    json_loads,
    openapi_document,
    operation_id,
)
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from .auth import ADMIN_PREFIX, CONNECTORS_PREFIX

Handler = Callable[..., Awaitable[Response]]
REF = "#/components/schemas/{model}"
# Local mode admits loopback without a key (docs/bff.md), hence the empty requirement first.
API_SECURITY: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}, {"apiKey": []}, {"session": []}]
# /api/admin/*: the admin key, or the login of a user who is an admin.
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}, {"bearerAuth": []}, {"session": []}]
KEY_ONLY_SECURITY: list[dict[str, list[str]]] = [{"adminKey": []}]  # /api/connectors: the admin key only
SECURITY_SCHEMES = {
    "adminKey": {"type": "http", "scheme": "bearer", "description": "BFF_ADMIN_KEY"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "one of BFF_API_KEYS"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "one of BFF_API_KEYS"},
    "session": {"type": "apiKey", "in": "cookie", "name": "cairn_login", "description": "an OIDC login"},
}
# 403: a Host the BFF does not serve (security.py); 401 and 429: the API guard (auth.py).
_GUARD_ERRORS = (401, 403, 429, 502, 503, 504)


def endpoint(
    method: str, path: str, reply: type[BaseModel] | Reply | Mapping[int, Reply], *, tags: str, **more: Any
) -> Callable[[Handler], Endpoint]:
    """The handler below as the route `method path` that the BFF answers itself, with its operation: `reply` is
    its 200 answer (a model, a Reply, or replies by status), `more` the rest of `Operation`, and the summary is
    the first paragraph of the handler's docstring. None of these reads a body (`parse_body=False`)."""
    replies = (
        reply if isinstance(reply, Mapping) else {200: reply if isinstance(reply, Reply) else Reply(reply)}
    )

    def declare(handler: Handler) -> Endpoint:
        summary = " ".join((handler.__doc__ or "").split("\n\n")[0].split())
        return Endpoint(
            handler, Operation(method, path, summary, replies, tags=[tags], **more), parse_body=False
        )

    return declare


class Proxied(Route):
    """A route forwarded to an upstream: its operations are the upstream's `upstream_path` in `upstream`'s
    document ("qs" or "gateway"), one per method, in the order given (Starlette keeps `methods` as a set)."""

    def __init__(self, path: str, handler: Handler, upstream: str, upstream_path: str, methods: list[str]):
        self.upstream = upstream
        self.upstream_path = upstream_path
        self.proxied_methods = [m.lower() for m in methods]
        super().__init__(path, handler, methods=methods)


def proxied(path: str, upstream: str, upstream_path: str, *methods: str) -> Callable[[Handler], Proxied]:
    """The handler below as the route `path`, forwarding `methods` to `upstream`'s `upstream_path`."""
    return lambda handler: Proxied(path, handler, upstream, upstream_path, list(methods))


class Files(Mount):
    """Static files the pages load: no API operation."""

    include_in_schema = False


def document(routes: Iterable[BaseRoute], upstreams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The BFF's document from its route table and the upstreams' documents (`{"qs": ..., "gateway": ...}`):
    its own operations first, then the proxied ones; a route that is neither raises (openapi_document)."""
    routes = list(routes)
    own = [r for r in routes if not isinstance(r, Proxied)]
    doc = openapi_document("Cairn BFF", CONTRACT_VERSION, own, security_schemes=SECURITY_SCHEMES)
    components = doc["components"]["schemas"]
    _, extra = models_json_schema([(ErrorEvent, "serialization")], ref_template=REF)
    _add_components(components, extra.get("$defs", {}))
    for route in routes:
        if isinstance(route, Proxied):
            source = upstreams[route.upstream]
            _add_components(components, source.get("components", {}).get("schemas", {}))
            for method in route.proxied_methods:
                doc["paths"].setdefault(route.path, {})[method] = _proxied_operation(route, method, source)
    return doc


def _proxied_operation(route: Proxied, method: str, source: dict[str, Any]) -> dict[str, Any]:
    path = route.path
    op = copy.deepcopy(source["paths"][route.upstream_path][method])
    op["operationId"] = operation_id(method, path)
    op["security"] = (
        KEY_ONLY_SECURITY
        if path.startswith(CONNECTORS_PREFIX)
        else ADMIN_SECURITY
        if path.startswith(ADMIN_PREFIX)
        else API_SECURITY
    )
    for status in _GUARD_ERRORS:
        op["responses"].setdefault(str(status), _error_response())
    _allow_error_frame(op)
    return op


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
    """`/openapi.json`, made on first request from the app's routes and the upstreams' documents, then kept."""
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
        state.openapi = bytes(JSONResponse(document(request.app.routes, upstreams)).body)
    return Response(state.openapi, media_type="application/json")


OPENAPI = Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)

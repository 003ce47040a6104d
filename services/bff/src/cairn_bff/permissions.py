"""`/api/collections/{name}/permissions` and `/api/admin/keys`: who may use a collection, and the API keys that
name users, forwarded to QS, which decides (admins and a collection's owner manage its permissions; admins
manage keys) and writes each change to the audit chain."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from .openapi import proxied
from .proxy import Upstream


def _qs(request: Request) -> Upstream:
    return request.app.state.qs


def _name(request: Request, key: str) -> str:
    return quote(request.path_params[key], safe="")


def _qs_admin(request: Request) -> dict[str, str]:
    token = request.app.state.settings.qs_admin_token
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}


@proxied("/api/collections/{name}/permissions", "qs", "/v1/collections/{name}/permissions", "GET", "PUT")
async def collection_permissions(request: Request) -> Response:
    path = f"/v1/collections/{_name(request, 'name')}/permissions"
    if request.method == "GET":
        return await _qs(request).forward(request, "GET", path)
    body = await request.body()
    return await _qs(request).forward(request, "PUT", path, content=body, content_type="application/json")


@proxied("/api/admin/keys", "qs", "/admin/keys", "GET", "POST")
async def keys(request: Request) -> Response:
    if request.method == "GET":
        return await _qs(request).forward(request, "GET", "/admin/keys", extra_headers=_qs_admin(request))
    body = await request.body()
    return await _qs(request).forward(
        request,
        "POST",
        "/admin/keys",
        content=body,
        content_type="application/json",
        extra_headers=_qs_admin(request),
    )


@proxied("/api/admin/keys/{key_id}", "qs", "/admin/keys/{key_id}", "DELETE")
async def key(request: Request) -> Response:
    path = f"/admin/keys/{_name(request, 'key_id')}"
    return await _qs(request).forward(request, "DELETE", path, extra_headers=_qs_admin(request))


ROUTES = [collection_permissions, keys, key]

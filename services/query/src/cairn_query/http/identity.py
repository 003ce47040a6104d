"""Users, groups and permissions over HTTP: who may use a collection, the API keys that name users, and the
login records the BFF sends (docs/operations.md, "Users, groups and permissions").

Handlers go through `governance.permissions.PermissionService`, which writes every change on the audit chain.
"""

from __future__ import annotations

from functools import partial

from cairn_core import CairnError, JSONResponse, Param, ReasonCode, Reply, parse_json_body, request_id_of
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.governance.access import Access, require_admin
from cairn_query.governance.permissions import PermissionService
from cairn_query.http.params import access, admin_service, endpoint, service_of
from cairn_query.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyResolveIn,
    LoginIn,
    PermissionsIn,
    PermissionsOut,
    Recorded,
    ResolvedIdentity,
)

_NAME = [Param("name", "path", {"type": "string"}, description="the collection")]
# Bodies are read after the caller's rights are checked (a 403 before a bad body's 400): parse_body=False.
_permissions = partial(endpoint, tags="permissions")
_keys = partial(endpoint, tags="admin", security=[{"adminBearer": []}])


def _service(request: Request) -> PermissionService:
    return service_of(request).permissions


def _collection(request: Request) -> str:
    name = str(request.path_params["name"])
    if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "._-" for c in name):
        raise CairnError(ReasonCode.NOT_FOUND, f"No collection named {name!r}.")
    return name


@_permissions("GET", "/v1/collections/{name}/permissions", PermissionsOut, errors=(403, 404), params=_NAME)
async def get_permissions(request: Request) -> Response:
    """Who may use a collection (admins and its owner)"""
    name, permissions = _collection(request), _service(request)
    await permissions.require_manager(await access(request), name)
    return JSONResponse(await permissions.of(name))


@_permissions(
    "PUT",
    "/v1/collections/{name}/permissions",
    PermissionsOut,
    body=PermissionsIn,
    parse_body=False,
    errors=(400, 403, 404),
    params=_NAME,
)
async def put_permissions(request: Request) -> Response:
    """Set who may use a collection: owner, writers, readers (`user:<id>`, `group:<name>`, `*`)"""
    name, permissions, caller = _collection(request), _service(request), await access(request)
    await permissions.require_manager(caller, name)
    body = await parse_json_body(request, PermissionsIn)
    if body.owner is None and not caller.unrestricted:
        # An owner who gave the collection away could not take it back: only an admin leaves it ownerless.
        raise CairnError(
            ReasonCode.BAD_REQUEST, "Name an owner; only an admin may leave a collection without."
        )
    rid = request_id_of(request)
    return JSONResponse(await permissions.replace(caller, rid, name, body.owner, body.writers, body.readers))


async def _admin(request: Request) -> Access:
    """The admin token, and a caller who is an admin (or the operator)."""
    admin_service(request)
    caller = await access(request)
    require_admin(caller)
    return caller


@_keys("GET", "/admin/keys", ApiKeyList, errors=(401, 403))
async def list_keys(request: Request) -> Response:
    """The API keys (never the keys themselves)"""
    await _admin(request)
    return JSONResponse({"keys": await _service(request).keys()})


@_keys(
    "POST",
    "/admin/keys",
    {201: Reply(ApiKeyCreated)},
    body=ApiKeyIn,
    parse_body=False,
    errors=(400, 401, 403),
)
async def create_key(request: Request) -> Response:
    """Make an API key for a user; the key is in this answer only"""
    caller = await _admin(request)
    body = await parse_json_body(request, ApiKeyIn)
    made = await _service(request).make_key(
        caller, request_id_of(request), body.user, body.name or body.user, body.groups, body.admin
    )
    return JSONResponse(made, status_code=201)


@_keys(
    "DELETE",
    "/admin/keys/{key_id}",
    ApiKeyOut,
    errors=(401, 403, 404),
    params=[Param("key_id", "path", {"type": "string"})],
)
async def delete_key(request: Request) -> Response:
    """Revoke an API key"""
    caller = await _admin(request)
    key_id = str(request.path_params["key_id"])
    row = await _service(request).revoke_key(caller, request_id_of(request), key_id)
    if row is None:
        raise CairnError(ReasonCode.NOT_FOUND, f"No API key with id {key_id!r}.")
    return JSONResponse(row)


@_permissions("POST", "/v1/keys/resolve", ResolvedIdentity, body=ApiKeyResolveIn, errors=(400, 404))
async def resolve_key(request: Request, body: ApiKeyResolveIn) -> Response:
    """The user an API key names, by the key's SHA-256 (the BFF's lookup)

    The BFF sends the key's hash: QS never sees a key."""
    row = await _service(request).key_by_hash(body.key_hash)
    if row is None:
        raise CairnError(ReasonCode.NOT_FOUND, "No such API key.")
    return JSONResponse({k: row[k] for k in ("user", "name", "groups", "admin")})


@_permissions("POST", "/v1/logins", Recorded, body=LoginIn, errors=(400,))
async def record_login(request: Request, body: LoginIn) -> Response:
    """Record a login on the audit chain (the BFF, after an OpenID Connect login)"""
    who = Access(body.user, tuple(body.groups), body.admin)
    await _service(request).record("login", who, request_id_of(request), via=body.via, name=body.name)
    return JSONResponse({"recorded": True})


ENDPOINTS = [
    get_permissions,
    put_permissions,
    resolve_key,
    record_login,
    list_keys,
    create_key,
    delete_key,
]

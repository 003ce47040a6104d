"""Users, groups and permissions over HTTP: who may use a collection, the API keys that name users, and the
login records the BFF sends (docs/operations.md, "Users, groups and permissions").

Every change here is a record on the audit chain (kind `permissions`, `key` or `login`), next to the answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from functools import partial
from typing import Any

from cairn_core import (
    CairnError,
    JSONResponse,
    Param,
    ReasonCode,
    Reply,
    parse_json_body,
    request_id_of,
    require_bearer,
)
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.governance.access import Access, access_of, require_admin, require_manager
from cairn_query.governance.audit import utc_now
from cairn_query.http.params import endpoint
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
from cairn_query.wiring import QueryService

KEY_PREFIX = "cairn_"
_NAME = [Param("name", "path", {"type": "string"}, description="the collection")]
# Bodies are read after the caller's rights are checked (a 403 before a bad body's 400): parse_body=False.
_permissions = partial(endpoint, tags="permissions")
_keys = partial(endpoint, tags="admin", security=[{"adminBearer": []}])


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _svc(request: Request) -> QueryService:
    return request.app.state.service


async def _record(request: Request, kind: str, by: Access, **fields: Any) -> None:
    """One record on the audit chain, whatever QS_AUDIT_ENABLED says of answers: who may read what is the
    first thing an auditor asks."""
    body = {
        "at": utc_now(),
        "kind": kind,
        "outcome": kind,
        "reason_code": None,
        "request_id": request_id_of(request),
        "by": by.audit() if by.user is not None else {"user": "operator"},
        **fields,
    }
    await _svc(request).audit.write(body)


def _collection(request: Request) -> str:
    name = str(request.path_params["name"])
    if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "._-" for c in name):
        raise CairnError(ReasonCode.NOT_FOUND, f"No collection named {name!r}.")
    return name


@_permissions("GET", "/v1/collections/{name}/permissions", PermissionsOut, errors=(403, 404), params=_NAME)
async def get_permissions(request: Request) -> Response:
    """Who may use a collection (admins and its owner)"""
    svc, name = _svc(request), _collection(request)
    access = await access_of(request, svc.store)
    await require_manager(access, svc.store, name)
    return JSONResponse(await asyncio.to_thread(svc.store.permissions.get, name))


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
    svc, name = _svc(request), _collection(request)
    access = await access_of(request, svc.store)
    await require_manager(access, svc.store, name)
    body = await parse_json_body(request, PermissionsIn)
    if body.owner is None and not access.unrestricted:
        # An owner who gave the collection away could not take it back: only an admin leaves it ownerless.
        raise CairnError(
            ReasonCode.BAD_REQUEST, "Name an owner; only an admin may leave a collection without."
        )
    before, after = await asyncio.to_thread(
        svc.store.permissions.replace, name, body.owner, body.writers, body.readers
    )
    await _record(request, "permissions", access, collection=name, before=before, after=after)
    return JSONResponse(after)


# --- API keys ------------------------------------------------------------------------------------------


async def _admin(request: Request) -> Access:
    svc = _svc(request)
    require_bearer(request, svc.settings.admin_token, "QS_ADMIN_TOKEN")
    access = await access_of(request, svc.store)
    require_admin(access)
    return access


@_keys("GET", "/admin/keys", ApiKeyList, errors=(401, 403))
async def list_keys(request: Request) -> Response:
    """The API keys (never the keys themselves)"""
    await _admin(request)
    return JSONResponse({"keys": await asyncio.to_thread(_svc(request).store.permissions.api_keys)})


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
    access = await _admin(request)
    body = await parse_json_body(request, ApiKeyIn)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    groups = sorted(set(body.groups))
    row = await asyncio.to_thread(
        _svc(request).store.permissions.add_key,
        secrets.token_hex(6),
        key_hash(key),
        body.user,
        body.name or body.user,
        groups,
        body.admin,
        access.user or "operator",
    )
    await _record(request, "key", access, action="created", key=row)
    return JSONResponse({**row, "key": key}, status_code=201)


@_keys(
    "DELETE",
    "/admin/keys/{key_id}",
    ApiKeyOut,
    errors=(401, 403, 404),
    params=[Param("key_id", "path", {"type": "string"})],
)
async def delete_key(request: Request) -> Response:
    """Revoke an API key"""
    access = await _admin(request)
    key_id = str(request.path_params["key_id"])
    row = await asyncio.to_thread(_svc(request).store.permissions.delete_key, key_id)
    if row is None:
        raise CairnError(ReasonCode.NOT_FOUND, f"No API key with id {key_id!r}.")
    await _record(request, "key", access, action="revoked", key=row)
    return JSONResponse(row)


@_permissions("POST", "/v1/keys/resolve", ResolvedIdentity, body=ApiKeyResolveIn, errors=(400, 404))
async def resolve_key(request: Request, body: ApiKeyResolveIn) -> Response:
    """The user an API key names, by the key's SHA-256 (the BFF's lookup)

    The BFF sends the key's hash: QS never sees a key."""
    row = await asyncio.to_thread(_svc(request).store.permissions.key_by_hash, body.key_hash)
    if row is None:
        raise CairnError(ReasonCode.NOT_FOUND, "No such API key.")
    return JSONResponse({k: row[k] for k in ("user", "name", "groups", "admin")})


@_permissions("POST", "/v1/logins", Recorded, body=LoginIn, errors=(400,))
async def record_login(request: Request, body: LoginIn) -> Response:
    """Record a login on the audit chain (the BFF, after an OpenID Connect login)"""
    who = Access(body.user, tuple(body.groups), body.admin)
    await _record(request, "login", who, via=body.via, name=body.name)
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

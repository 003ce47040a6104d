"""What every route reads from a request (the services, the caller, a bounded integer, an admin's token), and
how a route is declared with its OpenAPI operation (`endpoint`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cairn_core import OWNER_HEADER, BadRequest, Endpoint, Operation, Param, Reply, require_bearer
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from cairn_query.governance.access import Access, access_of, require_admin
from cairn_query.store import OPERATOR
from cairn_query.wiring import QueryService


def service_of(request: Request) -> QueryService:
    return request.app.state.service


def admin_service(request: Request) -> QueryService:
    """The services, for a caller with `Authorization: Bearer QS_ADMIN_TOKEN` (401 otherwise)."""
    svc = service_of(request)
    require_bearer(request, svc.settings.admin_token, "QS_ADMIN_TOKEN")
    return svc


async def access(request: Request) -> Access:
    """Who asks and which collections they may read (governance/access.py), worked out once per request."""
    return await access_of(request, service_of(request).store)


async def admin_of(request: Request) -> QueryService:
    """The admin token, and an admin behind it: the audit log and the ratings quote every collection, so a
    user the BFF names must be an admin too (the operator, naming nobody, is)."""
    svc = admin_service(request)
    require_admin(await access(request))
    return svc


def owner_of(request: Request) -> str:
    """Who a write is for: the BFF names its client; a caller at QS itself is the operator."""
    owner = request.headers.get(OWNER_HEADER, "").strip()
    if len(owner) > 100:
        raise BadRequest(f"{OWNER_HEADER} must be at most 100 characters.")
    return owner or OPERATOR


def int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only ("²".isdigit() is true), and few enough that int() takes them (it refuses > 4,300).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)) or int(raw) > high:
        raise BadRequest(f"'{name}' must be an integer from 0 to {high}.")
    return int(raw)


def page(request: Request, limit: int, most: int) -> tuple[int, int]:
    """`limit` (default `limit`, at most `most`) and `offset` of a listing."""
    return int_param(request, "limit", limit, most), int_param(request, "offset", 0, 10**9)


# --- the same parameters in the OpenAPI document ------------------------------------------------------------


def path_id(name: str) -> Param:
    return Param(name, "path", {"type": "string"}, required=True)


def page_params(limit: int, most: int) -> list[Param]:
    return [
        Param("limit", "query", {"type": "integer", "minimum": 0, "maximum": most, "default": limit}),
        Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
    ]


ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}]


def endpoint(
    method: str,
    path: str,
    reply: type[BaseModel] | Reply | Mapping[int, Reply],
    *,
    tags: str,
    parse_body: bool = True,
    guard: Callable[[Request], object] | None = None,
    **more: Any,
) -> Callable[[Callable[..., Awaitable[Response]]], Endpoint]:
    """The handler below as the route `method path` with its OpenAPI operation (`cairn_core.Endpoint`): `reply`
    is its 200 answer (a model, a Reply, or replies by status), `more` the rest of `Operation`, and the summary
    is the first paragraph of the handler's docstring, so the words that document the handler are the
    document's. With `body=Model`, the handler is called as `handler(request, body)`; `guard(request)` runs
    before the body is read (a credential check answers 401 before a bad body's 400)."""
    replies = (
        reply if isinstance(reply, Mapping) else {200: reply if isinstance(reply, Reply) else Reply(reply)}
    )

    def declare(handler: Callable[..., Awaitable[Response]]) -> Endpoint:
        summary = " ".join((handler.__doc__ or "").split("\n\n")[0].split())
        op = Operation(method, path, summary, replies, tags=[tags], **more)
        return Endpoint(handler, op, parse_body=parse_body, guard=guard)

    return declare

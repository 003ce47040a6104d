"""`/v1/connectors`: configure sources, run one now, read its status (docs/connectors.md).

Admin only (Authorization: Bearer QS_ADMIN_TOKEN): a source makes QS read a folder on its own machine or
fetch from the network, which no API client may point it at. The BFF forwards `/api/connectors` with the
admin key only.
"""

from __future__ import annotations

from cairn_core import JSONResponse, Operation, Param, Reply, parse_json_body, require_bearer
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cairn_query.connectors.models import (
    ConnectorDeleted,
    ConnectorIn,
    ConnectorList,
    ConnectorOut,
    ConnectorPatch,
    ConnectorRunStarted,
    ConnectorStatus,
)
from cairn_query.connectors.service import ConnectorService


def _connectors(request: Request) -> ConnectorService:
    svc = request.app.state.service
    require_bearer(request, svc.settings.admin_token, "QS_ADMIN_TOKEN")
    connectors: ConnectorService = svc.connectors
    return connectors


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def list_sources(request: Request) -> Response:
    return JSONResponse({"sources": await _connectors(request).list()})


async def create_source(request: Request) -> Response:
    connectors = _connectors(request)
    body = await parse_json_body(request, ConnectorIn)
    return JSONResponse(await connectors.create(body), status_code=201)


async def get_source(request: Request) -> Response:
    return JSONResponse(await _connectors(request).get(request.path_params["name"]))


async def update_source(request: Request) -> Response:
    connectors = _connectors(request)
    patch = await parse_json_body(request, ConnectorPatch)
    return JSONResponse(await connectors.update(request.path_params["name"], patch))


async def delete_source(request: Request) -> Response:
    connectors = _connectors(request)
    return JSONResponse(
        await connectors.delete(request.path_params["name"], _flag(request, "keep_documents"))
    )


async def run_source(request: Request) -> Response:
    """Start a run now (202); `?wait=true` answers when it has ended (200), with its status."""
    connectors, name = _connectors(request), request.path_params["name"]
    started = await connectors.start(name, "manual")
    if started and _flag(request, "wait"):
        await connectors.wait(name)
    source = await connectors.get(name)
    body = {"name": name, "started": started, "running": source["running"], "status": source["status"]}
    return JSONResponse(body, status_code=202 if source["running"] else 200)


async def source_status(request: Request) -> Response:
    source = await _connectors(request).get(request.path_params["name"])
    return JSONResponse({"name": source["name"], "running": source["running"], "status": source["status"]})


ROUTES = [
    Route("/v1/connectors", list_sources, methods=["GET"]),
    Route("/v1/connectors", create_source, methods=["POST"]),
    Route("/v1/connectors/{name}", get_source, methods=["GET"]),
    Route("/v1/connectors/{name}", update_source, methods=["PATCH"]),
    Route("/v1/connectors/{name}", delete_source, methods=["DELETE"]),
    Route("/v1/connectors/{name}/run", run_source, methods=["POST"]),
    Route("/v1/connectors/{name}/status", source_status, methods=["GET"]),
]

_NAME = Param("name", "path", {"type": "string"}, required=True)
_ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}]

OPERATIONS = [
    Operation(
        "GET",
        "/v1/connectors",
        "Connector sources with their last run's status",
        {200: Reply(ConnectorList)},
        errors=(401,),
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "POST",
        "/v1/connectors",
        "Configure a source (folder, website or git); its first run follows on the schedule or on /run",
        {201: Reply(ConnectorOut)},
        errors=(400, 401),
        body=ConnectorIn,
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "GET",
        "/v1/connectors/{name}",
        "One source",
        {200: Reply(ConnectorOut)},
        errors=(401, 404),
        params=[_NAME],
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "PATCH",
        "/v1/connectors/{name}",
        "Change a source's config, collection, interval or enabled flag",
        {200: Reply(ConnectorOut)},
        errors=(400, 401, 404),
        body=ConnectorPatch,
        params=[_NAME],
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "DELETE",
        "/v1/connectors/{name}",
        "Delete a source and, unless keep_documents=true, the documents it stored",
        {200: Reply(ConnectorDeleted)},
        errors=(401, 404),
        params=[_NAME, Param("keep_documents", "query", {"type": "boolean", "default": False})],
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "POST",
        "/v1/connectors/{name}/run",
        "Run a source now: 202 while it runs, 200 once ended (wait=true waits); started=false if one was going",
        {202: Reply(ConnectorRunStarted), 200: Reply(ConnectorRunStarted)},
        errors=(401, 404),
        params=[_NAME, Param("wait", "query", {"type": "boolean", "default": False})],
        security=_ADMIN,
        tags=["connectors"],
    ),
    Operation(
        "GET",
        "/v1/connectors/{name}/status",
        "The last (or current) run's status: counts, and each failed item with its reason",
        {200: Reply(ConnectorStatus)},
        errors=(401, 404),
        params=[_NAME],
        security=_ADMIN,
        tags=["connectors"],
    ),
]

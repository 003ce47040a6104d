"""`/v1/connectors`: configure sources, run one now, read its status (docs/connectors.md).

Admin only (Authorization: Bearer QS_ADMIN_TOKEN): a source makes QS read a folder on its own machine or
fetch from the network, which no API client may point it at. The BFF forwards `/api/connectors` with the
admin key only.
"""

from __future__ import annotations

from functools import partial

from cairn_core import JSONResponse, Param, Reply, require_bearer
from starlette.requests import Request
from starlette.responses import Response

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
from cairn_query.http.params import endpoint

_NAME = [Param("name", "path", {"type": "string"}, required=True)]


def _admin(request: Request) -> None:
    require_bearer(request, request.app.state.service.settings.admin_token, "QS_ADMIN_TOKEN")


_route = partial(endpoint, tags="connectors", security=[{"adminBearer": []}], guard=_admin)


def _connectors(request: Request) -> ConnectorService:
    connectors: ConnectorService = request.app.state.service.connectors
    return connectors


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


@_route("GET", "/v1/connectors", ConnectorList, errors=(401,))
async def list_sources(request: Request) -> Response:
    """Connector sources with their last run's status"""
    return JSONResponse({"sources": await _connectors(request).list()})


@_route("POST", "/v1/connectors", {201: Reply(ConnectorOut)}, errors=(400, 401), body=ConnectorIn)
async def create_source(request: Request, body: ConnectorIn) -> Response:
    """Configure a source (folder, website or git); its first run follows on the schedule or on /run"""
    return JSONResponse(await _connectors(request).create(body), status_code=201)


@_route("GET", "/v1/connectors/{name}", ConnectorOut, errors=(401, 404), params=_NAME)
async def get_source(request: Request) -> Response:
    """One source"""
    return JSONResponse(await _connectors(request).get(request.path_params["name"]))


@_route(
    "PATCH", "/v1/connectors/{name}", ConnectorOut, errors=(400, 401, 404), body=ConnectorPatch, params=_NAME
)
async def update_source(request: Request, patch: ConnectorPatch) -> Response:
    """Change a source's config, collection, interval or enabled flag"""
    return JSONResponse(await _connectors(request).update(request.path_params["name"], patch))


_KEEP = Param("keep_documents", "query", {"type": "boolean", "default": False})


@_route("DELETE", "/v1/connectors/{name}", ConnectorDeleted, errors=(401, 404), params=[*_NAME, _KEEP])
async def delete_source(request: Request) -> Response:
    """Delete a source and, unless keep_documents=true, the documents it stored"""
    connectors = _connectors(request)
    return JSONResponse(
        await connectors.delete(request.path_params["name"], _flag(request, "keep_documents"))
    )


_WAIT = Param("wait", "query", {"type": "boolean", "default": False})
_STARTED = {202: Reply(ConnectorRunStarted), 200: Reply(ConnectorRunStarted)}


@_route("POST", "/v1/connectors/{name}/run", _STARTED, errors=(401, 404), params=[*_NAME, _WAIT])
async def run_source(request: Request) -> Response:
    """Run a source now: 202 while it runs, 200 once ended (wait=true waits); started=false if one was going"""
    connectors, name = _connectors(request), request.path_params["name"]
    started = await connectors.start(name, "manual")
    if started and _flag(request, "wait"):
        await connectors.wait(name)
    source = await connectors.get(name)
    body = {"name": name, "started": started, "running": source["running"], "status": source["status"]}
    return JSONResponse(body, status_code=202 if source["running"] else 200)


@_route("GET", "/v1/connectors/{name}/status", ConnectorStatus, errors=(401, 404), params=_NAME)
async def source_status(request: Request) -> Response:
    """The last (or current) run's status: counts, and each failed item with its reason"""
    source = await _connectors(request).get(request.path_params["name"])
    return JSONResponse({"name": source["name"], "running": source["running"], "status": source["status"]})


ENDPOINTS = [list_sources, create_source, get_source, update_source, delete_source, run_source, source_status]

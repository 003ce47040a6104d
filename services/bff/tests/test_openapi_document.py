"""The BFF's `/openapi.json` is built from its route table: every route the app serves has its operation, its
own (`@endpoint`) or the upstream's it forwards to (`@proxied`), and a route with neither makes it raise."""

from __future__ import annotations

from typing import Any

import pytest
from cairn_bff.app import create_app
from cairn_bff.openapi import Proxied, document
from cairn_bff.routes import ROUTES
from cairn_bff.settings import BffSettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route


def _upstreams(routes: list[BaseRoute]) -> dict[str, dict[str, Any]]:
    """Stand-ins for QS's and the gateway's documents: one bare operation where each proxied route points."""
    docs: dict[str, dict[str, Any]] = {"qs": {"paths": {}}, "gateway": {"paths": {}}}
    for route in routes:
        if isinstance(route, Proxied):
            ops = docs[route.upstream]["paths"].setdefault(route.upstream_path, {})
            ops.update({m: {"summary": route.upstream_path, "responses": {}} for m in route.proxied_methods})
    return docs


def test_every_route_of_the_app_has_an_operation_in_the_document() -> None:
    app = create_app(BffSettings(_env_file=None))  # type: ignore[call-arg]
    paths = document(app.routes, _upstreams(app.routes))["paths"]
    served = [
        (method.lower(), route.path)
        for route in app.routes
        if getattr(route, "include_in_schema", True)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    ]
    assert len(served) >= 45
    missing = [(m, p) for m, p in served if m not in paths.get(p, {})]
    assert not missing, f"routes without an OpenAPI operation: {missing}"
    # The document itself and the static files are opted out, not forgotten.
    assert "/openapi.json" not in paths and not any(p.startswith("/static") for p in paths)
    # A proxied operation is the upstream's, under the BFF's path, behind the BFF's guard.
    chat = paths["/api/chat"]["post"]
    assert chat["summary"] == "/v1/chat" and chat["operationId"] == "post_api_chat"
    assert {"401", "429", "502"} <= chat["responses"].keys()
    assert paths["/api/connectors"]["get"]["security"] == [{"adminKey": []}]


async def _plain(request: Request) -> Response:
    return Response()


def test_a_route_without_an_operation_makes_the_document_raise() -> None:
    routes = [*ROUTES, Route("/api/undocumented", _plain, methods=["GET"])]
    with pytest.raises(TypeError, match="/api/undocumented"):
        document(routes, _upstreams(routes))

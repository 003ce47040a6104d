"""The gateway's `/openapi.json` is built from its route table: every route the app serves has its operation."""

from __future__ import annotations

from cairn_gateway.app import create_app
from cairn_gateway.routes import document
from cairn_gateway.settings import GatewaySettings


def test_every_route_of_the_app_has_an_operation_in_the_document() -> None:
    app = create_app(GatewaySettings(_env_file=None))  # type: ignore[call-arg]
    paths = document()["paths"]
    served = [
        (method.lower(), route.path)
        for route in app.routes
        if getattr(route, "include_in_schema", True)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    ]
    assert len(served) >= 13
    missing = [(m, p) for m, p in served if m not in paths.get(p, {})]
    assert not missing, f"routes without an OpenAPI operation: {missing}"
    assert "/openapi.json" not in paths  # the document itself is opted out, not forgotten


def test_an_operation_body_is_the_model_its_route_parses_with() -> None:
    op = document()["paths"]["/v1/generate"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GenerateRequest"
    }

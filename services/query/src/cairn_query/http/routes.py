"""The route table: each concern's routes with their OpenAPI operations (`@endpoint`, in the module of its
handlers), and `/openapi.json` made of those operations.

Handlers are thin (parse, call a service, shape the response); a raised CairnError becomes its HTTP answer in
`cairn_core`'s exception handlers (installed by `service_app`).
"""

from __future__ import annotations

from typing import Any

from cairn_core import CONTRACT_VERSION, openapi_document, openapi_route
from starlette.routing import BaseRoute

from cairn_query.http import chat, connectors, conversations, documents, governance, health, identity

ENDPOINTS = [
    *documents.ENDPOINTS,
    *chat.ENDPOINTS,
    *conversations.ENDPOINTS,
    *governance.ENDPOINTS,
    *health.ENDPOINTS,
    *connectors.ENDPOINTS,
    *identity.ENDPOINTS,
]


def openapi() -> dict[str, Any]:
    return openapi_document(
        "Cairn query service",
        CONTRACT_VERSION,
        ROUTES,  # every route: one without its operation makes this raise (a test asks for the document)
        guarded_errors=(401,),  # the internal token (cairn_core _auth), when it is set
        security_schemes={"adminBearer": {"type": "http", "scheme": "bearer"}},
    )


ROUTES: list[BaseRoute] = [*ENDPOINTS, openapi_route(openapi)]

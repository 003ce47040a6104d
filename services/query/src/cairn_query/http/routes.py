"""The route table: each concern's routes with their OpenAPI operations, from the module of its handlers.

Handlers are thin (parse, call a service, shape the response); a raised CairnError becomes its HTTP answer in
`cairn_core`'s exception handlers (installed by `service_app`).
"""

from __future__ import annotations

from functools import partial

from cairn_core import openapi_route
from starlette.routing import BaseRoute

from cairn_query.http import chat, conversations, documents, governance, health, openapi

ENDPOINTS = [
    *documents.ENDPOINTS,
    *chat.ENDPOINTS,
    *conversations.ENDPOINTS,
    *governance.ENDPOINTS,
    *health.ENDPOINTS,
]

ROUTES: list[BaseRoute] = [
    *(e.route() for e in ENDPOINTS),
    openapi_route(partial(openapi.document, [e.operation for e in ENDPOINTS])),
]

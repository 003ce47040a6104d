"""`create_app(settings)`: the query service's Starlette app; everything stateful is built in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cairn_core import (
    InternalAuthMiddleware,
    internal_headers,
    make_http_client,
    redis_client,
    running,
    secret_of,
    service_app,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware

from cairn_query.clients.gateway import GatewayClient
from cairn_query.connectors.schedule import Scheduler
from cairn_query.governance.policy_file import load_policy
from cairn_query.http.routes import ROUTES
from cairn_query.settings import QuerySettings
from cairn_query.store import open_store
from cairn_query.wiring import QueryService

SERVICE_NAME = "query-service"


def create_app(settings: QuerySettings | None = None) -> Starlette:
    settings = settings or QuerySettings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Redis first: when it is configured and down, QS refuses to start before it opens anything else.
        async with redis_client(secret_of(settings.redis_url)) as redis:
            # A broken policy file stops QS here, with the line of the mistake (docs/governance.md).
            policy = await asyncio.to_thread(load_policy, settings.policy_file)
            store = await asyncio.to_thread(open_store, settings)
            async with make_http_client(
                timeout_s=settings.gateway_timeout_ms / 1000,
                headers=internal_headers(settings.internal_token),
                transport=settings.http_transport,
            ) as http:
                service: QueryService | None = None
                try:
                    gateway = GatewayClient(settings, http, app.state.tracer)
                    service = QueryService.build(settings, store, gateway, redis, policy)
                    app.state.service = service
                    async with contextlib.AsyncExitStack() as background:
                        await background.enter_async_context(
                            running(service.audit.retention(), "audit-retention")
                        )
                        if settings.embed_retry_s:
                            await background.enter_async_context(
                                running(service.documents.retry_embeddings(), "embed-retry")
                            )
                        if settings.connectors_scheduler:
                            await background.enter_async_context(
                                running(Scheduler(service.connectors).run(), "connectors")
                            )
                        if settings.policy_file and settings.policy_watch_s:
                            await background.enter_async_context(
                                running(service.watch_policy(), "policy-watch")
                            )
                        yield
                finally:
                    if service is not None:
                        await service.connectors.close()  # runs started by the API, with no scheduler
                        service.documents.close()
                    store.close()

    auth = Middleware(InternalAuthMiddleware, token=settings.internal_token)
    return service_app(SERVICE_NAME, settings, routes=ROUTES, lifespan=lifespan, outer=[auth])

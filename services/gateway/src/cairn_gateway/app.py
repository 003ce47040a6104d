"""`create_app(settings)`: the gateway's Starlette app; everything stateful is built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cairn_core import (
    configure_logging,
    make_aiohttp_session,
    service_app,
    setup_tracing,
)
from starlette.applications import Starlette

from .metrics import GatewayMetrics
from .registry import Registry
from .routes import ROUTES
from .service import GenerationService
from .settings import GatewaySettings

SERVICE_NAME = "llm-gateway"


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings()
    configure_logging(SERVICE_NAME, settings.log_level)
    tracer_provider = setup_tracing(SERVICE_NAME)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics = GatewayMetrics()
        async with make_aiohttp_session(max_connections=max(64, settings.max_concurrency * 4)) as http:
            registry = Registry(settings, http, metrics)
            try:
                await registry.start()
                app.state.service = GenerationService(settings, registry, metrics)
                yield
            finally:
                await registry.aclose()
                tracer_provider.shutdown()

    return service_app(
        routes=ROUTES,
        lifespan=lifespan,
        tracer=tracer_provider.get_tracer(SERVICE_NAME),
        max_body_bytes=settings.max_body_bytes,
    )

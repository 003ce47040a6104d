"""`create_app(settings)`: the gateway's Starlette app; everything stateful is built in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cairn_core import InternalAuthMiddleware, make_aiohttp_session, redis_client, secret_of, service_app
from starlette.applications import Starlette
from starlette.middleware import Middleware

from .engine import Engine
from .keys import KeyStore
from .metrics import GatewayMetrics
from .model_registry import ModelRegistry
from .routes import ROUTES
from .settings import GatewaySettings

SERVICE_NAME = "llm-gateway"


def create_app(settings: GatewaySettings | None = None) -> Starlette:
    settings = settings or GatewaySettings()
    # Built before the lifespan: the auth middleware needs it on the first request.
    keys = KeyStore(settings.internal_token, settings.master_key, settings.keys_path)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics = GatewayMetrics()
        async with (
            redis_client(secret_of(settings.redis_url)) as redis,
            make_aiohttp_session(max_connections=max(64, settings.max_concurrency * 4)) as http,
        ):
            registry = ModelRegistry(settings, http, metrics, redis)
            tasks: list[asyncio.Task[None]] = []
            try:
                if redis is not None:
                    await keys.share(redis)
                if keys.master:  # virtual keys exist only with a master key
                    tasks.append(asyncio.create_task(keys.keep_fresh(settings.keys_refresh_s)))
                await registry.start()
                tasks.append(asyncio.create_task(registry.retry_failed(settings.load_retry_s)))
                app.state.engine = Engine(settings, registry)
                yield
            finally:
                for task in tasks:
                    task.cancel()
                keys.close()
                await registry.aclose()

    auth = Middleware(
        InternalAuthMiddleware,
        token=settings.internal_token,
        also_admit=keys.admits if keys.enforced else None,
        hint=", or 'Authorization: Bearer <key>' with LLM_MASTER_KEY or a virtual key",
        own_auth_prefixes=("/admin/", "/key/"),
    )
    app = service_app(SERVICE_NAME, settings, routes=ROUTES, lifespan=lifespan, outer=[auth])
    app.state.keys = keys
    return app

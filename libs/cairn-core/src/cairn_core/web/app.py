"""What every service's `create_app` and `__main__` share: the Starlette app around its routes, and serving it.

Each service keeps its own `app.py` (its lifespan is its own); `service_app` does the rest once, so that it
cannot drift: logging and tracing set up under the service's name, the tracer flushed at shutdown, the startup
heap frozen, the exception handlers (errors map to HTTP here, through `EXCEPTION_HANDLERS`), and the order of
the common middleware (request context outermost, so every log line and error carries the request id; the body
limit innermost, next to the routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ..observability import RequestContextMiddleware, configure_logging, setup_tracing
from .handlers import EXCEPTION_HANDLERS, BodyLimitMiddleware
from .server import guarded_protocol


class ServiceSettings(Protocol):
    """What `service_app` reads from a service's settings."""

    log_level: str
    max_body_bytes: int


def service_app(
    name: str,
    settings: ServiceSettings,
    *,
    routes: Sequence[BaseRoute],
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]],
    body_timeout_s: float = 60.0,
    outer: Sequence[Middleware] = (),
    inner: Sequence[Middleware] = (),
) -> Starlette:
    """The app of the service called `name` (in every log line and span). Its tracer is `app.state.tracer`
    from the start, for the lifespan's clients. `outer` middleware runs after the request context and before
    the body limit, `inner` after it."""
    configure_logging(name, settings.log_level)
    tracer_provider = setup_tracing(name)
    tracer = tracer_provider.get_tracer(name)

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[Any]:
        try:
            async with lifespan(app) as state:
                freeze_startup_heap()
                yield state
        finally:
            tracer_provider.shutdown()  # exports the spans still buffered

    app = Starlette(
        routes=list(routes),
        lifespan=run,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestContextMiddleware, tracer=tracer),
            *outer,
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=body_timeout_s),
            *inner,
        ],
    )
    app.state.tracer = tracer
    return app


# Young-generation threshold once serving. CPython's default (700 allocations) runs a collection every few
# requests; each one is cheap, but together with the full collections they cost about a tenth of a relay's
# CPU (measured in the gateway under load, docs/benchmarks.md). Requests allocate short-lived objects that
# reference counting frees anyway; the collector is only there for the rare cycle.
GC_GEN0_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """Move everything built at startup (modules, settings, loaded models) out of the collector's sight, so
    no collection ever walks it again, and collect young objects less often. Call once startup is done."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def serve(
    app: Starlette,
    host: str,
    port: int,
    *,
    trusted_proxies: str = "",
    header_timeout_s: float = 10.0,
    max_connections: int = 1000,
) -> None:
    """uvicorn with our logging (its access log is replaced by one JSON line per request), a short drain, and
    the slow-client guards of `_server.py`.

    `trusted_proxies`: comma-separated addresses or networks whose `X-Forwarded-For` is believed. Empty (the
    default) believes nobody: uvicorn's own default trusts 127.0.0.1, so any local process could pick its
    client address and with it a fresh rate-limit bucket per request.
    """
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        proxy_headers=bool(trusted_proxies.strip()),
        forwarded_allow_ips=trusted_proxies.strip() or None,
        http=guarded_protocol(header_timeout_s, max_connections),
    )


@asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task for as long as the block lasts (a lifespan's background loop), then cancel it and
    wait for it, so nothing of it outlives the app."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""What every service's `create_app` and `__main__` share: the Starlette app around its routes, and serving it.

Each service keeps its own `app.py` (its lifespan is its own); this holds only the part that must not drift:
the exception handlers and the order of the common middleware (request context outermost, so every log line
and error carries the request id; the body limit innermost, next to the routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from opentelemetry.trace import Tracer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ._observability import RequestContextMiddleware
from ._server import guarded_protocol
from ._web import EXCEPTION_HANDLERS, BodyLimitMiddleware


def service_app(
    *,
    routes: Sequence[BaseRoute],
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]],
    tracer: Tracer,
    max_body_bytes: int,
    body_timeout_s: float = 60.0,
    outer: Sequence[Middleware] = (),
    inner: Sequence[Middleware] = (),
) -> Starlette:
    """`outer` middleware runs after the request context and before the body limit, `inner` after it."""
    return Starlette(
        routes=list(routes),
        lifespan=_freeze_heap_after(lifespan),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestContextMiddleware, tracer=tracer),
            *outer,
            Middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, timeout_s=body_timeout_s),
            *inner,
        ],
    )


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


def _freeze_heap_after(
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]],
) -> Callable[[Starlette], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def wrapped(app: Starlette) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            freeze_startup_heap()
            yield state

    return wrapped


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

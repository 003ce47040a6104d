"""What every service's `create_app` and `__main__` share: the Starlette app around its routes, and serving it.

Each service keeps its own `app.py` (its lifespan is its own); this holds only the part that must not drift:
the exception handlers and the order of the common middleware (request context outermost, so every log line
and error carries the request id; the body limit innermost, next to the routes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from opentelemetry.trace import Tracer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ._observability import RequestContextMiddleware
from ._web import EXCEPTION_HANDLERS, BodyLimitMiddleware


def service_app(
    *,
    routes: Sequence[BaseRoute],
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]],
    tracer: Tracer,
    max_body_bytes: int,
    outer: Sequence[Middleware] = (),
    inner: Sequence[Middleware] = (),
) -> Starlette:
    """`outer` middleware runs after the request context and before the body limit, `inner` after it."""
    return Starlette(
        routes=list(routes),
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestContextMiddleware, tracer=tracer),
            *outer,
            Middleware(BodyLimitMiddleware, max_bytes=max_body_bytes),
            *inner,
        ],
    )


def serve(app: Starlette, host: str, port: int) -> None:
    """uvicorn with our logging (its access log is replaced by one JSON line per request) and a short drain."""
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)

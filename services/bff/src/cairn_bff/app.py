"""`create_app(settings)`: the BFF's Starlette app; upstream clients and the Redis client live in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import httpx
from cairn_core import internal_headers, make_http_client, redis_client, secret_of, service_app
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.sessions import SessionMiddleware

from .auth import ApiGuardMiddleware, Limits
from .history import MemoryRing, RedisRing, Ring, Sampler, sampling
from .identity import KeyDirectory
from .metrics import BffMetrics
from .oidc import SESSION_COOKIE, make_oauth
from .proxy import Upstream
from .routes import ROUTES
from .security import HostGuardMiddleware, SecurityHeadersMiddleware, TrustedProxyMiddleware
from .settings import BffSettings

SERVICE_NAME = "bff"


def _outer_middleware(settings: BffSettings) -> list[Middleware]:
    """What runs before the API guard: the real peer behind trusted proxies, the Host check, the security
    headers, CORS when origins are configured, and the login cookie when OIDC is."""
    # The address the BFF is bound to is a name it is reached by; a wildcard bind names nothing.
    own = [] if settings.host in ("0.0.0.0", "::", "") else [settings.host.lower()]
    outer = [
        Middleware(TrustedProxyMiddleware, trusted=settings.trusted_proxies),
        Middleware(HostGuardMiddleware, allowed=[*settings.allowed_host_list, *own]),
        Middleware(SecurityHeadersMiddleware),
    ]
    if settings.cors_origin_list:  # closed by default: no CORS headers at all, so browsers refuse others
        outer.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origin_list,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After", "X-Cache"],
            )
        )
    if settings.oidc_issuer:
        # The login cookie: signed, HttpOnly (Starlette sets it so), SameSite=Lax (oidc.py says why).
        assert settings.session_secret is not None  # BffSettings refuses OIDC without it
        outer.append(
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret.get_secret_value(),
                session_cookie=SESSION_COOKIE,
                max_age=settings.session_max_age_s,
                same_site="lax",
                https_only=settings.cookie_secure,
            )
        )
    return outer


def _lifespan(
    settings: BffSettings, limits: Limits, keys: KeyDirectory
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The clients of QS and the gateway, Redis where configured, and the dashboard's sampler."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        def client(base_url: str) -> httpx.AsyncClient:
            return make_http_client(
                base_url,
                timeout_s=settings.upstream_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                headers=internal_headers(settings.internal_token),
                transport=settings.http_transport,
            )

        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(redis_client(secret_of(settings.redis_url)))
            if redis is not None:
                limits.share(redis, settings)
            qs_http = [await stack.enter_async_context(client(url)) for url in settings.qs_url_list]
            gw_http = await stack.enter_async_context(client(settings.gateway_url))
            tracer = app.state.tracer
            app.state.settings = settings
            app.state.qs = Upstream("query service", qs_http, tracer, app.state.metrics)
            keys.upstream = app.state.qs  # managed API keys are looked up in QS
            app.state.gateway = Upstream("LLM gateway", [gw_http], tracer, app.state.metrics)
            # The dashboard's history; entered after the clients, so the sampler stops before they close.
            size, sample_s = settings.dashboard_points, settings.dashboard_sample_s
            ring: Ring = RedisRing(redis, size, sample_s) if redis is not None else MemoryRing(size)
            app.state.history = ring
            if sample_s > 0:
                sampler = Sampler(app.state.gateway, app.state.qs, ring, sample_s, settings.metrics_timeout_s)
                await stack.enter_async_context(sampling(sampler))
            yield

    return lifespan


def create_app(settings: BffSettings | None = None) -> Starlette:
    settings = settings or BffSettings()
    metrics = BffMetrics()
    # The guard needs its limits and metrics before the lifespan runs (middleware is built on first call);
    # the lifespan moves the limits to Redis when it is configured.
    limits = Limits.in_memory(settings)
    keys = KeyDirectory(settings)
    outer = _outer_middleware(settings)
    app = service_app(
        SERVICE_NAME,
        settings,
        routes=ROUTES,
        lifespan=_lifespan(settings, limits, keys),
        body_timeout_s=settings.body_timeout_s,
        outer=outer,
        inner=[
            Middleware(
                ApiGuardMiddleware,
                settings=settings,
                limits=limits,
                metrics=metrics,
                routes=ROUTES,
                keys=keys,
            )
        ],
    )
    app.state.oauth = make_oauth(settings)
    app.state.metrics = metrics
    app.state.limits = limits
    return app

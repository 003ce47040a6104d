"""Who may call `/api`: API keys in constant time, the documented local mode, and the per-client rate limit.

Rules (docs/bff.md):
- A request that carries a key (`Authorization: Bearer <key>` or `X-API-Key`) must match one of BFF_API_KEYS,
  compared with `hmac.compare_digest` against every key, else 401 UNAUTHORIZED.
- Without a key, local mode (BFF_LOCAL_MODE, default on) admits clients from BFF_LOCAL_NETWORKS (loopback)
  whose `Origin`, when the browser sends one, is this server itself: another web site open in the same
  browser cannot drive the API (no CSRF through localhost). Anything else is 401.
- Every admitted request spends one token of its identity's bucket (the key's fingerprint, or the client
  address in local mode); an empty bucket is 429 RATE_LIMITED with Retry-After.
- Every refused request spends one token of its client address's failure bucket (BFF_AUTH_FAILURES_PER_MINUTE);
  while that is empty, the address gets 429 before its key is even looked at, so keys cannot be guessed at
  speed. A client address is the IP, or for BFF_ONE_CLIENT_NETWORKS (loopback) the whole network (`client_id`).
- At most BFF_MAX_INFLIGHT_PER_CLIENT chat, search and upload requests of one identity run at once (a
  stream counts until it ends); more is 429, so one client cannot take the gateway's slots and queue.
- The client IP is the socket's peer unless it is one of BFF_TRUSTED_PROXIES (see cairn_core `serve`).
- The buckets and in-flight counts live in this process, or in Redis when CAIRN_REDIS_URL is set, so that
  they hold across BFF replicas (`Limits.share`; docs/operations.md, Shared state).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from cairn_core import ReasonCode, Redis, error_response
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .inflight import Concurrency, InFlight, RedisInFlight
from .metrics import BffMetrics
from .ratelimit import Limiter, RateLimiter, RedisRateLimiter
from .settings import BffSettings

API_PREFIX = "/api/"
ADMIN_PREFIX = "/api/admin/"
# What only the admin key may call: the admin pages' data, and the connector sources (a source makes QS read a
# folder on its machine or fetch from the network, which no API key or local page may point it at).
ADMIN_PREFIXES = (ADMIN_PREFIX, "/api/connectors")


class AuthError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key", "").strip() or None


def key_matches(given: str, keys: list[bytes]) -> bool:
    # Compare against every key (no early exit) so timing says nothing about which key, or how much, matched.
    raw = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(raw, key)
    return found


def _is_local(client_host: str | None, settings: BffSettings) -> bool:
    if not client_host:
        return False
    try:
        addr = ipaddress.ip_address(client_host)
    except ValueError:
        return False
    return any(addr in net for net in settings.local_network_list)


def client_id(host: str | None, settings: BffSettings) -> str:
    """The identity of the limits kept per address: `ip:<address>`, or `ip:<network>` for an address in one of
    BFF_ONE_CLIENT_NETWORKS (loopback by default). A local process can bind any 127.x.y.z as its source, so
    buckets keyed on the exact address gave it a fresh failed-login budget and request budget per address."""
    if not host:
        return "ip:?"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return f"ip:{host}"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.2 is 127.0.0.2 on a dual-stack socket
    for net in settings.one_client_network_list:
        if addr in net:
            return f"ip:{net}"
    return f"ip:{addr}"


def _same_origin(headers: Headers) -> bool:
    # Browsers send Sec-Fetch-Site on every request and Origin on cross-origin and most POSTs; a client that
    # is not a browser (curl on this machine) sends neither and is trusted like the page.
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    return origin is None or urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def identify(scope: Scope, settings: BffSettings) -> str:
    """The rate-limit identity of an admitted request; raises AuthError when it is not admitted."""
    headers = Headers(scope=scope)
    key = presented_key(headers)
    if scope["path"].startswith(ADMIN_PREFIXES):
        # The audit log shows what everyone asked: the admin key only, never an API key or local mode.
        if settings.admin_key is None:
            raise AuthError("The admin pages are off: set BFF_ADMIN_KEY (make up writes .run/admin-token).")
        if key is None or not key_matches(key, [settings.admin_key.get_secret_value().encode()]):
            raise AuthError("The admin key is required: send 'Authorization: Bearer <BFF_ADMIN_KEY>'.")
        return "admin"
    if key is not None:
        if not key_matches(key, settings.key_list):
            raise AuthError("Invalid API key.")
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    client = scope.get("client")
    host = client[0] if client else None
    if settings.local_mode and _is_local(host, settings) and _same_origin(headers):
        return client_id(host, settings)
    if settings.local_mode and _is_local(host, settings):
        raise AuthError("Cross-origin requests need an API key (local mode admits only this server's page).")
    raise AuthError("An API key is required: send 'Authorization: Bearer <key>' (see BFF_API_KEYS).")


# The requests that make work downstream (a generation, a search, an embedding); reads are cheap.
_COSTLY = frozenset({("POST", "/api/chat"), ("POST", "/api/search"), ("POST", "/api/documents")})


@dataclass
class Limits:
    """The guard's three limits. Built in memory by `create_app` (the middleware exists before the lifespan
    runs); the lifespan calls `share` to move them to Redis when CAIRN_REDIS_URL is set."""

    requests: Limiter
    failures: Limiter
    inflight: Concurrency

    @classmethod
    def in_memory(cls, settings: BffSettings) -> Limits:
        return cls(
            RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            RateLimiter(settings.auth_failures_per_minute, settings.auth_failures_burst),
            InFlight(settings.max_inflight_per_client),
        )

    def share(self, redis: Redis, settings: BffSettings) -> None:
        self.requests = RedisRateLimiter(
            redis, "ratelimit", settings.rate_limit_per_minute, settings.rate_limit_burst
        )
        self.failures = RedisRateLimiter(
            redis, "authfail", settings.auth_failures_per_minute, settings.auth_failures_burst
        )
        self.inflight = RedisInFlight(redis, settings.max_inflight_per_client, settings.inflight_ttl_s)


def route_label(routes: list[BaseRoute], scope: Scope) -> str:
    """The route template (`/api/documents/{doc_id}`) for the metrics label, never the raw path: every
    unknown path would otherwise become a Prometheus series of its own."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class ApiGuardMiddleware:
    """Pure ASGI so streams pass through untouched; guards only paths under /api/."""

    def __init__(
        self,
        app: ASGIApp,
        settings: BffSettings,
        limits: Limits,
        metrics: BffMetrics,
        routes: list[BaseRoute],
    ) -> None:
        self.app = app
        self.settings = settings
        self.limits = limits
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(API_PREFIX)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        client = scope.get("client")
        peer = client_id(client[0] if client else None, self.settings)
        limits = self.limits
        wait = await limits.failures.wait(peer)
        if wait > 0:
            message = f"Too many failed authentications from this address; retry in {wait:.1f} s."
            await self._limited(scope, receive, send, message, wait)
            return
        try:
            identity = identify(scope, self.settings)
        except AuthError as exc:
            await limits.failures.check(peer)
            self.metrics.rejected.labels(ReasonCode.UNAUTHORIZED.value).inc()
            response = error_response(ReasonCode.UNAUTHORIZED, exc.message, rid)
            response.headers["WWW-Authenticate"] = 'Bearer realm="cairn"'
            await response(scope, receive, send)
            return
        # Who owns what this request writes: the key, or "local" for the page and tools on this machine
        # (they are one user, whatever loopback address they come from). QS scopes document ids by it.
        scope.setdefault("state", {})["owner"] = identity if identity.startswith("key:") else "local"
        wait = await limits.requests.check(identity)
        if wait > 0:
            await self._limited(scope, receive, send, f"Too many requests; retry in {wait:.1f} s.", wait)
            return
        path = scope["path"].rstrip("/")
        costly = (scope["method"], path) in _COSTLY or (
            scope["method"] == "POST"
            and path.startswith("/api/conversations/")
            and path.endswith("/messages")
        )
        ticket = await limits.inflight.enter(identity) if costly else None
        if costly and ticket is None:
            limit = limits.inflight.limit
            message = (
                f"At most {limit} chat, search or upload requests at once per client; retry when one ends."
            )
            await self._limited(scope, receive, send, message, 1.0)
            return
        route = route_label(self.routes, scope)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if ticket is not None:
                await limits.inflight.leave(identity, ticket)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, message: str, wait: float) -> None:
        self.metrics.rejected.labels(ReasonCode.RATE_LIMITED.value).inc()
        rid = scope.get("state", {}).get("request_id")
        await error_response(ReasonCode.RATE_LIMITED, message, rid, retry_after=wait)(scope, receive, send)

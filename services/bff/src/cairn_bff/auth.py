"""Who may call `/api`: identities (identity.py) checked here, the documented local mode, and the per-client
rate limit.

Rules (docs/bff.md, docs/operations.md "Users, groups and permissions"):
- A request that carries a key (`Authorization: Bearer <key>` or `X-API-Key`) must be BFF_ADMIN_KEY, one of
  BFF_API_KEYS (compared with `hmac.compare_digest` against every key) or a key an admin made (looked up in
  QS by its hash), else 401 UNAUTHORIZED.
- Without a key: a trusted proxy's user header (BFF_PROXY_AUTH), then the OIDC login cookie; a page that
  is signed in is, like local mode, admitted only from this server's own origin (no CSRF).
- Local mode (BFF_LOCAL_MODE, default on, and only while no login is configured) admits clients from
  BFF_LOCAL_NETWORKS (loopback) whose `Origin`, when the browser sends one, is this server itself: another
  web site open in the same browser cannot drive the API (no CSRF through localhost). Anything else is 401.
- /api/admin/* needs the admin key or a user who is an admin (`Identity.operator`).
- Every admitted request spends one token of its identity's bucket (the user, the key's fingerprint, or the
  client address in local mode); an empty bucket is 429 RATE_LIMITED with Retry-After.
- Every refused request spends one token of its client address's failure bucket (BFF_AUTH_FAILURES_PER_MINUTE);
  while that is empty, the address gets 429 before its key is even looked at, so keys cannot be guessed at
  speed. A client address is the IP, or for BFF_ONE_CLIENT_NETWORKS (loopback) the whole network (`client_id`).
- At most BFF_MAX_INFLIGHT_PER_CLIENT chat, search and upload requests of one identity run at once (a
  stream counts until it ends); more is 429, so one client cannot take the gateway's slots and queue.
- The client IP is the socket's peer unless it is one of BFF_TRUSTED_PROXIES (security.TrustedProxyMiddleware).
- The buckets and in-flight counts live in this process, or in Redis when CAIRN_REDIS_URL is set, so that
  they hold across BFF replicas (`Limits.share`; docs/operations.md, Shared state).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from cairn_core import CairnError, ReasonCode, Redis, error_response
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .identity import (
    AuthError,
    Identity,
    KeyDirectory,
    fingerprint,
    from_proxy,
    from_session,
    key_matches,
    presented_key,
)
from .inflight import Concurrency, InFlight, RedisInFlight
from .metrics import BffMetrics
from .ratelimit import Limiter, RateLimiter, RedisRateLimiter
from .settings import BffSettings

API_PREFIX = "/api/"
ADMIN_PREFIX = "/api/admin/"
# What only the admin key may call: the admin pages' data, and the connector sources (a source makes QS read a
# folder on its machine or fetch from the network, which no API key or local page may point it at).
CONNECTORS_PREFIX = "/api/connectors"
ADMIN_PREFIXES = (ADMIN_PREFIX, CONNECTORS_PREFIX)


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


async def identify(scope: Scope, settings: BffSettings, keys: KeyDirectory) -> Identity:
    """Who an admitted request is from (identity.py says in which order); raises AuthError otherwise."""
    headers = Headers(scope=scope)
    key = presented_key(headers)
    identity = await _identity(scope, headers, key, settings, keys)
    path = scope["path"]
    # The audit log shows what everyone asked: the admin key, or a user who is an admin. Connector sources
    # make QS read its own disk or the network: the admin key only, as before identities.
    allowed = identity.via == "admin-key" if path.startswith(CONNECTORS_PREFIX) else identity.operator
    if path.startswith(ADMIN_PREFIXES) and not allowed:
        if settings.admin_key is None and identity.via in ("local", "key"):
            raise AuthError("The admin pages are off: set BFF_ADMIN_KEY (make up writes .run/admin-token).")
        raise AuthError("The admin key is required: send 'Authorization: Bearer <BFF_ADMIN_KEY>'.")
    return identity


async def _identity(
    scope: Scope, headers: Headers, key: str | None, settings: BffSettings, keys: KeyDirectory
) -> Identity:
    if key is not None:
        admin_key = settings.admin_key.get_secret_value().encode() if settings.admin_key else None
        if admin_key and key_matches(key, [admin_key]):
            return Identity("admin", "Admin", (), True, "admin-key", legacy_owner="admin")
        if key_matches(key, settings.key_list):
            fp = "key:" + fingerprint(key)[:16]
            return Identity(fp, "API key", (), True, "key", legacy_owner=fp)
        managed = await keys.resolve(key)
        if managed is None:
            raise AuthError("Invalid API key.")
        return managed
    # A browser's login (the proxy's cookie, or ours) rides along on any site's request: like local mode, it
    # admits only this server's own page.
    signed_in = from_proxy(scope, headers, settings) or from_session(scope, settings)
    if signed_in is not None:
        if not _same_origin(headers):
            raise AuthError("Cross-origin requests need an API key (a login admits only this server's page).")
        return signed_in
    client = scope.get("client")
    host = client[0] if client else None
    if settings.local_mode_on and _is_local(host, settings):
        if not _same_origin(headers):
            raise AuthError(
                "Cross-origin requests need an API key (local mode admits only this server's page)."
            )
        return Identity("local", "Local user", (), True, "local", legacy_owner=client_id(host, settings))
    if settings.oidc_issuer:
        raise AuthError("Sign in first (/auth/login), or send an API key.")
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


def _costly(method: str, path: str) -> bool:
    """Chat, search, uploads and conversation messages: the requests the in-flight cap counts."""
    return (method, path) in _COSTLY or (
        method == "POST" and path.startswith("/api/conversations/") and path.endswith("/messages")
    )


class ApiGuardMiddleware:
    """Pure ASGI so streams pass through untouched; guards only paths under /api/."""

    def __init__(
        self,
        app: ASGIApp,
        settings: BffSettings,
        limits: Limits,
        metrics: BffMetrics,
        routes: list[BaseRoute],
        keys: KeyDirectory,
    ) -> None:
        self.app = app
        self.keys = keys
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
        who = await self._authenticate(scope, receive, send)
        if who is None:  # refused, and answered
            return
        limits = self.limits
        # Who owns what this request writes: the user, the key, or "local" for the page and tools on this
        # machine (they are one user, whatever loopback address they come from). QS scopes document ids by it.
        state = scope.setdefault("state", {})
        state["owner"] = "local" if who.via == "local" else who.owner
        state["identity"] = who
        # The limits' identity: the user, the key, or the client address in local mode.
        identity = who.legacy_owner if who.via in ("local", "key", "admin-key") else who.owner
        assert identity is not None
        wait = await limits.requests.check(identity)
        if wait > 0:
            await self._limited(scope, receive, send, f"Too many requests; retry in {wait:.1f} s.", wait)
            return
        costly = _costly(scope["method"], scope["path"].rstrip("/"))
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

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send) -> Identity | None:
        """Who sends this request, or None once a refusal is sent: too many failures from this address, no
        valid credential (401, counted as a failure), or QS unreachable for a key's lookup."""
        rid = scope.get("state", {}).get("request_id")
        client = scope.get("client")
        peer = client_id(client[0] if client else None, self.settings)
        wait = await self.limits.failures.wait(peer)
        if wait > 0:
            message = f"Too many failed authentications from this address; retry in {wait:.1f} s."
            await self._limited(scope, receive, send, message, wait)
            return None
        try:
            return await identify(scope, self.settings, self.keys)
        except CairnError as exc:  # QS could not be asked about a key: say so, never a 500
            await error_response(exc.reason_code, exc.message, rid)(scope, receive, send)
        except AuthError as exc:
            await self.limits.failures.check(peer)
            self.metrics.rejected.labels(ReasonCode.UNAUTHORIZED.value).inc()
            response = error_response(ReasonCode.UNAUTHORIZED, exc.message, rid)
            response.headers["WWW-Authenticate"] = 'Bearer realm="cairn"'
            await response(scope, receive, send)
        return None

    async def _limited(self, scope: Scope, receive: Receive, send: Send, message: str, wait: float) -> None:
        self.metrics.rejected.labels(ReasonCode.RATE_LIMITED.value).inc()
        rid = scope.get("state", {}).get("request_id")
        await error_response(ReasonCode.RATE_LIMITED, message, rid, retry_after=wait)(scope, receive, send)

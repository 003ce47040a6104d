"""Who may call `/api`: API keys in constant time, the documented local mode, and the per-client rate limit.

Rules (docs/bff.md):
- A request that carries a key (`Authorization: Bearer <key>` or `X-API-Key`) must match one of BFF_API_KEYS,
  compared with `hmac.compare_digest` against every key, else 401 UNAUTHORIZED.
- Without a key, local mode (BFF_LOCAL_MODE, default on) admits clients from BFF_LOCAL_NETWORKS (loopback)
  whose `Origin`, when the browser sends one, is this server itself: another web site open in the same
  browser cannot drive the API (no CSRF through localhost). Anything else is 401.
- Every admitted request spends one token of its identity's bucket (the key's fingerprint, or the client IP
  in local mode); an empty bucket is 429 RATE_LIMITED with Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from cairn_core import ReasonCode, error_response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import BffMetrics
from .ratelimit import RateLimiter
from .settings import BffSettings

API_PREFIX = "/api/"


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
    if key is not None:
        if not key_matches(key, settings.key_list):
            raise AuthError("Invalid API key.")
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    client = scope.get("client")
    host = client[0] if client else None
    if settings.local_mode and _is_local(host, settings) and _same_origin(headers):
        return f"ip:{host}"
    if settings.local_mode and _is_local(host, settings):
        raise AuthError("Cross-origin requests need an API key (local mode admits only this server's page).")
    raise AuthError("An API key is required: send 'Authorization: Bearer <key>' (see BFF_API_KEYS).")


class ApiGuardMiddleware:
    """Pure ASGI so streams pass through untouched; guards only paths under /api/."""

    def __init__(
        self, app: ASGIApp, settings: BffSettings, limiter: RateLimiter, metrics: BffMetrics
    ) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(API_PREFIX)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        try:
            identity = identify(scope, self.settings)
        except AuthError as exc:
            self.metrics.rejected.labels(ReasonCode.UNAUTHORIZED.value).inc()
            response = error_response(ReasonCode.UNAUTHORIZED, exc.message, rid)
            response.headers["WWW-Authenticate"] = 'Bearer realm="cairn"'
            await response(scope, receive, send)
            return
        wait = self.limiter.check(identity)
        if wait > 0:
            self.metrics.rejected.labels(ReasonCode.RATE_LIMITED.value).inc()
            message = f"Too many requests; retry in {wait:.1f} s."
            await error_response(ReasonCode.RATE_LIMITED, message, rid, retry_after=wait)(
                scope, receive, send
            )
            return
        route = API_PREFIX + scope["path"][len(API_PREFIX) :].split("/", 1)[0]  # ids stay out of the labels

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)

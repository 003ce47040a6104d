"""Security headers on every response (a strict CSP: no inline script, same-origin only), the Host check, and
which proxies' `X-Forwarded-For` is believed."""

from __future__ import annotations

from typing import Any, cast

from cairn_core import ReasonCode, error_response, is_loopback_host
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from .identity import PEER

# The page is plain files served by us: nothing inline, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Probes come from orchestrators under whatever Host they use (a pod IP); they reveal nothing.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def host_name(host_header: str) -> str:
    """`Host` without its port, lower case: `[::1]:8080` → `[::1]`, `Example.com:80` → `example.com`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, allowed: list[str]) -> bool:
    if is_loopback_host(host) or host.endswith(".localhost") or "*" in allowed:
        return True
    return any(host == a or (a.startswith("*.") and host.endswith(a[1:])) for a in allowed)


class HostGuardMiddleware:
    """Serves only requests addressed to this server by a name it knows (loopback, or BFF_ALLOWED_HOSTS).

    DNS rebinding: a page on attacker.example re-points its own name at 127.0.0.1, and the browser then
    treats the BFF as that page's origin, so Origin and Sec-Fetch-Site look same-origin. Only the Host header
    still says which name the browser thinks it is talking to; refusing unknown names closes the door.
    """

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await self.app(scope, receive, send)
            return
        host = host_name(Headers(scope=scope).get("host", ""))
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        message = (
            f"Host {host!r} is not served here; add it to BFF_ALLOWED_HOSTS if it is this server's name."
        )
        await error_response(ReasonCode.POLICY_REJECTED, message, rid)(scope, receive, send)


class TrustedProxyMiddleware:
    """Believes `X-Forwarded-For` from BFF_TRUSTED_PROXIES only (uvicorn's ProxyHeadersMiddleware), and keeps
    the socket's peer in `scope["cairn.peer"]` first: once the client address is rewritten the peer is gone,
    and a proxy's user header (identity.from_proxy) must be believed from the proxy itself only. That is why
    this is done here and not by uvicorn (`__main__` serves with no trusted proxies of its own)."""

    def __init__(self, app: ASGIApp, trusted: str) -> None:
        # uvicorn types its middleware with its own ASGI types; at run time both are the same callables.
        proxied: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=trusted)
        self.app: ASGIApp = proxied if trusted.strip() else app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            scope[PEER] = client[0] if client else None
        await self.app(scope, receive, send)

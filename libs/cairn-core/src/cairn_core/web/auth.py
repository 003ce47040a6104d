"""Service-to-service auth: the internal token that QS and the gateway require from their callers.

The BFF is the only door meant for people; QS and the gateway sit behind it. Without a credential of their
own, anyone who can reach their ports (a local user, another container, an SSRF on the host) could delete
every document or spend the provider's key, whatever BFF_API_KEYS says. So:

- `CAIRN_INTERNAL_TOKEN` is one secret shared by the three services (`make up` writes a random one to
  `.run/internal-token` when none is set). The BFF and QS send it on every hop in `X-Cairn-Internal-Token`.
- When it is set, QS and the gateway refuse any request without it (401 UNAUTHORIZED), except the probes
  and the Prometheus scrape. The gateway also takes its own API keys (see the gateway's `keys.py`).
- When it is not set, a service that binds anywhere but loopback refuses to start: open ports must never
  be the accident of a missing setting.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..contract.errors import CairnError
from ..contract.reason_codes import ReasonCode
from .handlers import error_response

INTERNAL_TOKEN_ENV = "CAIRN_INTERNAL_TOKEN"
INTERNAL_TOKEN_HEADER = "X-Cairn-Internal-Token"
# Who a write is made for, set by the BFF (an API key's fingerprint, or "local"); QS believes it because only
# holders of the internal token can reach QS once that is set.
OWNER_HEADER = "X-Cairn-Owner"
# Probes and the metrics scrape stay open: orchestrators and Prometheus call them without credentials, and
# they reveal counts, not documents.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def secret_of(token: SecretStr | None) -> str:
    """The token's value, or "" when it is unset or blank (a blank token means off, never "matches blank")."""
    return token.get_secret_value().strip() if token is not None else ""


def internal_headers(token: SecretStr | None) -> dict[str, str]:
    """What a caller adds to each request to the next hop."""
    secret = secret_of(token)
    return {INTERNAL_TOKEN_HEADER: secret} if secret else {}


def token_matches(given: str, secret: str) -> bool:
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token_off_loopback(service: str, host: str, token: SecretStr | None) -> None:
    """Refuse to serve on a non-loopback address without the internal token; called before binding."""
    if not secret_of(token) and not is_loopback_host(host):
        raise SystemExit(
            f"{service}: refusing to listen on {host} without {INTERNAL_TOKEN_ENV}: anyone who can reach the "
            f"port could use the service. Set {INTERNAL_TOKEN_ENV} to the same random value for every Cairn "
            "service (for example `openssl rand -hex 32`), or bind to 127.0.0.1."
        )


def require_bearer(request: Request, token: SecretStr | None, setting: str) -> None:
    """Admin endpoints: `Authorization: Bearer <token>`, compared in constant time. No token set = disabled,
    and so is a token set to the empty string (`LLM_ADMIN_TOKEN=`), which would otherwise match an empty
    header and let anyone in."""
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    secret = secret_of(token)
    if not token_matches(given, secret):
        state = "" if secret else f" ({setting} is not set, so admin endpoints are off)"
        raise CairnError(
            ReasonCode.UNAUTHORIZED, f"Admin endpoints need 'Authorization: Bearer <{setting}>'{state}."
        )


class InternalAuthMiddleware:
    """Admits a request that carries the internal token, or that `also_admit(headers)` accepts; pure ASGI so
    streams pass through untouched. With no token and no `also_admit`, everything is admitted (loopback)."""

    def __init__(
        self,
        app: ASGIApp,
        token: SecretStr | None,
        also_admit: Callable[[Headers], bool] | None = None,
        hint: str = "",
        own_auth_prefixes: tuple[str, ...] = ("/admin/",),
    ) -> None:
        self.app = app
        # Routes that check a credential of their own (the admin token, the master key) with its own message.
        self.own_auth_prefixes = own_auth_prefixes
        self.secret = secret_of(token)
        self.also_admit = also_admit
        self.hint = hint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(self.own_auth_prefixes)
            or self._admitted(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        message = f"This service needs the {INTERNAL_TOKEN_HEADER} header ({INTERNAL_TOKEN_ENV}){self.hint}."
        response = error_response(ReasonCode.UNAUTHORIZED, message, rid)
        response.headers["WWW-Authenticate"] = 'Bearer realm="cairn"'
        await response(scope, receive, send)

    def _admitted(self, headers: Headers) -> bool:
        if not self.secret and self.also_admit is None:
            return True
        if token_matches(headers.get(INTERNAL_TOKEN_HEADER.lower(), ""), self.secret):
            return True
        return self.also_admit is not None and self.also_admit(headers)

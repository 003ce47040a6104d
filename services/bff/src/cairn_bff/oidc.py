"""OpenID Connect login (docs/operations.md, "Users, groups and permissions"): the authorization code flow with
PKCE, through Authlib's Starlette client.

`/auth/login` sends the browser to the provider with a fresh `state`, `nonce` and PKCE verifier (kept in the
signed session cookie); `/auth/callback` trades the code for tokens, and Authlib checks the ID token's
signature against the provider's JWKS, its issuer, audience, expiry and nonce. The user, their name and their
groups (BFF_OIDC_*_CLAIM; from the userinfo endpoint when the ID token leaves the groups out) go into the
session cookie, which is signed (itsdangerous), HttpOnly and SameSite=Lax (Lax, not Strict: the provider's
redirect back is a cross-site navigation that must carry the cookie holding `state`). Each login is a record
on QS's audit chain.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from authlib.integrations.starlette_client import OAuth, OAuthError
from cairn_core import CairnError, JSONResponse, Param, ReasonCode, Reply
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .identity import from_claims, split_groups
from .openapi import API_SECURITY, endpoint
from .schemas import Me
from .settings import BffSettings

log = structlog.get_logger("oidc")
PROVIDER = "oidc"
SESSION_COOKIE = "cairn_login"


def make_oauth(settings: BffSettings) -> OAuth | None:
    """The registered client, or None when no issuer is configured; one per app (no module state)."""
    if not settings.oidc_issuer:
        return None
    oauth = OAuth()
    secret = settings.oidc_client_secret
    oauth.register(
        PROVIDER,
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
    )
    return oauth


def _client(request: Request) -> Any:
    oauth = request.app.state.oauth
    if oauth is None:
        raise CairnError(ReasonCode.NOT_FOUND, "No OpenID Connect login is configured (BFF_OIDC_ISSUER).")
    return oauth.create_client(PROVIDER)


@endpoint(
    "GET",
    "/auth/login",
    {302: Reply(description="To the provider's authorization endpoint")},
    tags="identity",
    errors=(404, 503),
)
async def login(request: Request) -> Response:
    """Sign in with OpenID Connect: a redirect to the provider (404 when none is configured)"""
    settings: BffSettings = request.app.state.settings
    redirect = settings.oidc_redirect_url or str(request.url_for("oidc_callback"))
    try:
        return await _client(request).authorize_redirect(request, redirect)
    except OAuthError as exc:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE, f"The login provider refused: {exc.error}."
        ) from None
    except OSError as exc:  # the discovery document could not be fetched
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE, f"The login provider is unreachable: {type(exc).__name__}."
        ) from None


@endpoint(
    "GET",
    "/auth/callback",
    {303: Reply(description="To the chat page")},
    tags="identity",
    errors=(401, 404),
    params=[Param("code", "query", {"type": "string"}), Param("state", "query", {"type": "string"})],
)
async def oidc_callback(request: Request) -> Response:  # named: /auth/login redirects to url_for of it
    """The provider's redirect back: the login cookie is set, then a redirect to the page"""
    settings: BffSettings = request.app.state.settings
    client = _client(request)
    try:
        token = await client.authorize_access_token(request)
        claims = dict(token.get("userinfo") or {})
        if settings.oidc_groups_claim not in claims:
            claims.update(await client.userinfo(token=token))
    except OAuthError as exc:
        log.warning("oidc_login_refused", error=exc.error)
        raise CairnError(ReasonCode.UNAUTHORIZED, f"The login did not complete: {exc.error}.") from None
    user = str(claims.get(settings.oidc_user_claim) or "")
    if not user:
        raise CairnError(
            ReasonCode.UNAUTHORIZED, f"The login names no user (claim {settings.oidc_user_claim!r})."
        )
    identity = from_claims(
        user,
        str(claims.get(settings.oidc_name_claim) or ""),
        _groups(claims.get(settings.oidc_groups_claim)),
        "oidc",
        settings,
    )
    request.session.clear()
    request.session["login"] = {
        "user": identity.user,
        "name": identity.name,
        "groups": list(identity.groups),
        "admin": identity.admin,
        "exp": time.time() + settings.session_max_age_s,
    }
    await _record_login(request, identity.public())
    return RedirectResponse("/", status_code=303)


def _groups(value: Any) -> tuple[str, ...]:
    """Providers send groups as a list (Keycloak, Authentik, Entra ID) or, rarely, one comma-separated string."""
    if isinstance(value, str):
        return split_groups(value)
    if isinstance(value, list):
        return tuple(sorted({str(g) for g in value if str(g).strip()}))
    return ()


async def _record_login(request: Request, who: dict[str, Any]) -> None:
    """A login record on QS's audit chain; a QS that cannot take it is logged, and the login still holds."""
    body = {k: who[k] for k in ("user", "name", "groups", "admin")} | {"via": "oidc"}
    try:
        resp = await request.app.state.qs.post_json(
            "/v1/logins", body, request.app.state.settings.metrics_timeout_s
        )
        if resp.status_code != 200:
            log.error("login_not_recorded", status=resp.status_code)
    except CairnError as exc:
        log.error("login_not_recorded", reason_code=exc.reason_code.value)
    log.info("login", user=who["user"], groups=who["groups"], admin=who["admin"])


@endpoint("GET", "/auth/logout", {303: Reply(description="To the chat page")}, tags="identity")
async def logout(request: Request) -> Response:
    """Sign out: the login cookie is cleared"""
    if "session" in request.scope:  # no session without OIDC
        request.session.clear()
    return RedirectResponse("/", status_code=303)


@endpoint("GET", "/api/me", Me, tags="identity", errors=(401, 429), security=API_SECURITY)
async def me(request: Request) -> Response:
    """Who the BFF takes the caller for: local mode, a login, a proxy's user or a key"""
    identity = request.state.identity
    settings: BffSettings = request.app.state.settings
    return JSONResponse({**identity.public(), "login": bool(settings.oidc_issuer)})


ROUTES = [me, login, oidc_callback, logout]

"""A minimal, real OpenID Connect provider for the login tests: discovery, authorize (a sign-in form), token,
JWKS and userinfo, over HTTP, with RS256-signed ID tokens (joserfc, Authlib's JOSE library).

Run: `python -m cairn_testing.oidc_provider --port 9000 --client-id cairn --client-secret s3cret
--users '{"alice": {"name": "Alice", "groups": ["hr"]}}'`, or `start_oidc_provider(...)`.

It is strict where a client could be wrong: the authorization request must carry the registered client id,
`response_type=code`, a `state`, a `nonce` and a PKCE challenge (S256 only); the code is single-use, bound
to its client, redirect URI and challenge, and expires after a minute; the token endpoint takes the client
secret (basic or post) and the PKCE verifier. `GET /_stats` says how many codes and tokens it issued.
Everything lives in the app's state, one provider per process.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .processes import ServerProcess, start_server


@dataclass
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    users: dict[str, dict[str, Any]]
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> user
    issued: dict[str, int] = field(default_factory=lambda: {"codes": 0, "tokens": 0})

    def claims(self, user: str) -> dict[str, Any]:
        info = self.users[user]
        return {
            "sub": user,
            "name": info.get("name", user),
            "preferred_username": user,
            "email": f"{user}@example.test",
            "groups": list(info.get("groups", [])),
        }


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _provider(request: Request) -> Provider:
    return request.app.state.provider


async def discovery(request: Request) -> Response:
    p = _provider(request)
    return JSONResponse(
        {
            "issuer": p.issuer,
            "authorization_endpoint": f"{p.issuer}/authorize",
            "token_endpoint": f"{p.issuer}/token",
            "jwks_uri": f"{p.issuer}/jwks",
            "userinfo_endpoint": f"{p.issuer}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
        }
    )


async def jwks(request: Request) -> Response:
    return JSONResponse({"keys": [_provider(request).key.as_dict(private=False)]})


_REQUIRED = ("client_id", "redirect_uri", "response_type", "state", "nonce", "code_challenge")


async def authorize(request: Request) -> Response:
    p = _provider(request)
    params = dict(request.query_params) if request.method == "GET" else dict(await request.form())
    missing = [k for k in _REQUIRED if not params.get(k)]
    if missing:
        return _error(400, "invalid_request", f"missing {missing}")
    if params["client_id"] != p.client_id or params["response_type"] != "code":
        return _error(400, "unauthorized_client", "unknown client or response type")
    if params.get("code_challenge_method") != "S256":
        return _error(400, "invalid_request", "PKCE with S256 is required")
    user = str(params.get("username", ""))
    if request.method == "GET" or user not in p.users:
        hidden = "".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(str(v))}">'
            for k, v in params.items()
            if k != "username"
        )
        wrong = "<p id='error'>Unknown user.</p>" if request.method == "POST" else ""
        return HTMLResponse(
            "<!doctype html><title>Sign in</title><form method='post' action='/authorize'>"
            f"{hidden}{wrong}<label>User <input id='username' name='username'></label>"
            "<button id='sign-in' type='submit'>Sign in</button></form>"
        )
    code = secrets.token_urlsafe(24)
    p.codes[code] = {**params, "user": user, "expires": time.time() + 60}
    p.issued["codes"] += 1
    query = urlencode({"code": code, "state": params["state"]})
    return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)


def _client_ok(p: Provider, request: Request, form: dict[str, Any]) -> bool:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
    else:
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    return client_id == p.client_id and secrets.compare_digest(secret, p.client_secret)


async def token(request: Request) -> Response:
    p = _provider(request)
    form = dict(await request.form())
    if not _client_ok(p, request, form):
        return _error(401, "invalid_client", "client authentication failed")
    if form.get("grant_type") != "authorization_code":
        return _error(400, "unsupported_grant_type", "authorization_code only")
    grant = p.codes.pop(str(form.get("code", "")), None)  # single use, whatever happens next
    if grant is None or grant["expires"] < time.time() or grant["redirect_uri"] != form.get("redirect_uri"):
        return _error(400, "invalid_grant", "unknown, used or expired code, or another redirect_uri")
    verifier = str(form.get("code_verifier", ""))
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if not verifier or challenge != grant["code_challenge"]:
        return _error(400, "invalid_grant", "PKCE verifier does not match")
    now = int(time.time())
    claims = {
        **p.claims(grant["user"]),
        "iss": p.issuer,
        "aud": p.client_id,
        "iat": now,
        "exp": now + 300,
        "nonce": grant["nonce"],
    }
    id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, p.key)
    access = secrets.token_urlsafe(24)
    p.tokens[access] = grant["user"]
    p.issued["tokens"] += 1
    return JSONResponse(
        {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
    )


async def userinfo(request: Request) -> Response:
    p = _provider(request)
    auth = request.headers.get("authorization", "")
    user = p.tokens.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
    if user is None:
        return _error(401, "invalid_token", "unknown access token")
    return JSONResponse(p.claims(user))


async def stats(request: Request) -> Response:
    return JSONResponse(_provider(request).issued)


def create_app(provider: Provider) -> Starlette:
    app = Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize, methods=["GET", "POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/userinfo", userinfo, methods=["GET"]),
            Route("/_stats", stats, methods=["GET"]),
        ]
    )
    app.state.provider = provider
    return app


def start_oidc_provider(
    users: dict[str, dict[str, Any]], client_id: str = "cairn", client_secret: str = "oidc-test-secret"
) -> ServerProcess:
    """The provider as a real process on a free port; its issuer is its URL."""
    args = ["cairn_testing.oidc_provider", "--port", "{port}", "--client-id", client_id]
    args += ["--client-secret", client_secret, "--users", json.dumps(users)]
    return start_server("oidc", args, health_path="/.well-known/openid-configuration")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--client-id", default="cairn")
    parser.add_argument("--client-secret", default="oidc-test-secret")
    parser.add_argument("--users", default='{"alice": {"name": "Alice", "groups": ["hr"]}}')
    args = parser.parse_args()
    issuer = f"http://{args.host}:{args.port}"
    provider = Provider(issuer, args.client_id, args.client_secret, json.loads(args.users))
    uvicorn.run(create_app(provider), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

"""Who a request is from: an `Identity` from an API key, an OpenID Connect session, a trusted proxy's header, or
local mode (docs/operations.md, "Users, groups and permissions").

In order, the first that applies:
1. A key (`Authorization: Bearer` or `X-API-Key`). BFF_ADMIN_KEY is the operator; a key of BFF_API_KEYS is
   a configured key, as before: it reads every collection. Any other key must be one an admin made
   (`cairn_…`, POST /api/admin/keys): the BFF sends its SHA-256 to QS, which names its user and groups,
   and keeps the answer for BFF_KEY_CACHE_S (a revoked key stops working within that).
2. With BFF_PROXY_AUTH, the user header of a reverse proxy (oauth2-proxy's `X-Forwarded-User` and
   `X-Forwarded-Groups`), believed only when the socket's peer is one of BFF_TRUSTED_PROXIES.
3. With BFF_OIDC_ISSUER, the signed login cookie the OIDC login set (oidc.py).
4. Local mode, when no login is configured: the page on loopback is the one local user, who may do
   everything.
Groups listed in BFF_ADMIN_GROUPS make their members admins. The identity travels to QS on every forwarded
request (`upstream_headers`), and QS filters what it reads by it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cairn_core import GROUPS_HEADER, ROLE_HEADER, USER_HEADER, CairnError, ReasonCode
from starlette.datastructures import Headers
from starlette.types import Scope

from .settings import BffSettings

if TYPE_CHECKING:
    from .proxy import Upstream

MANAGED_KEY_PREFIX = "cairn_"  # keys QS made (http/identity.py); others are never looked up there
PEER = "cairn.peer"  # the socket's peer, kept by security.TrustedProxyMiddleware before X-Forwarded-For


class AuthError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Identity:
    user: str
    name: str
    groups: tuple[str, ...] = ()
    # Reads every collection and manages permissions (QS's admin role).
    admin: bool = False
    # How it was established: admin-key, key (BFF_API_KEYS), managed-key, proxy, oidc or local.
    via: str = "local"
    # The rate-limit and document owner of keys and local mode, as before identities: kept so that what they
    # wrote stays theirs.
    legacy_owner: str | None = None

    @property
    def owner(self) -> str:
        return self.legacy_owner or f"user:{self.user}"

    @property
    def operator(self) -> bool:
        """May use /api/admin/* (the audit log, API keys): the admin key, or a user who is an admin. The local
        user and configured keys read everything but, as before, open the audit log only with the admin key."""
        return self.via == "admin-key" or (self.admin and self.via in ("managed-key", "proxy", "oidc"))

    def public(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "name": self.name,
            "groups": list(self.groups),
            "admin": self.admin,
            "operator": self.operator,
            "via": self.via,
        }


def upstream_headers(identity: Identity | None) -> dict[str, str]:
    """What QS is told of the caller (cairn_core USER_HEADER, …); the proxy adds them to every request."""
    if identity is None:
        return {}
    headers = {USER_HEADER: identity.user, ROLE_HEADER: "admin" if identity.admin else "user"}
    if identity.groups:
        headers[GROUPS_HEADER] = ",".join(identity.groups)
    return headers


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


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_groups(text: str) -> tuple[str, ...]:
    return tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))


def from_claims(user: str, name: str, groups: tuple[str, ...], via: str, settings: BffSettings) -> Identity:
    admin = bool(set(groups) & set(settings.admin_group_list))
    return Identity(user, name or user, groups, admin, via)


@dataclass
class KeyCache:
    """Managed keys QS has named, by hash, for `ttl_s`; bounded, so guessed keys cannot grow it (only keys
    that resolved are kept)."""

    ttl_s: float
    size: int = 10_000
    _items: dict[str, tuple[float, Identity]] = field(default_factory=dict)

    def get(self, key_hash: str) -> Identity | None:
        item = self._items.get(key_hash)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key_hash: str, identity: Identity) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[key_hash] = (time.monotonic() + self.ttl_s, identity)


def trusted_peer(scope: Scope, settings: BffSettings) -> bool:
    peer = scope.get(PEER)
    if not peer:
        return False
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(addr in net for net in settings.trusted_proxy_list)


def from_proxy(scope: Scope, headers: Headers, settings: BffSettings) -> Identity | None:
    """The reverse proxy's user, when the proxy is trusted and says who; None otherwise."""
    if not settings.proxy_auth:
        return None
    user = headers.get(settings.proxy_user_header, "").strip()
    if not user or not trusted_peer(scope, settings):
        return None
    if len(user) > 200:
        raise AuthError(f"{settings.proxy_user_header} is longer than 200 characters.")
    groups = split_groups(headers.get(settings.proxy_groups_header, ""))
    name = headers.get(settings.proxy_name_header, "").strip()[:200]
    return from_claims(user, name, groups, "proxy", settings)


def from_session(scope: Scope, settings: BffSettings) -> Identity | None:
    """The OIDC login kept in the signed session cookie (oidc.py writes it), until it expires."""
    session = scope.get("session") or {}
    login = session.get("login")
    if not isinstance(login, dict) or float(login.get("exp", 0)) < time.time():
        return None
    groups = tuple(str(g) for g in login.get("groups", []))
    return Identity(
        str(login["user"]), str(login.get("name") or login["user"]), groups, bool(login.get("admin")), "oidc"
    )


class KeyDirectory:
    """Managed API keys, looked up in QS by hash (so every replica knows every key) and cached here. The
    lifespan sets `upstream` once the QS clients exist."""

    def __init__(self, settings: BffSettings) -> None:
        self.settings = settings
        self.cache = KeyCache(settings.key_cache_s)
        self.upstream: Upstream | None = None

    async def resolve(self, key: str) -> Identity | None:
        if not key.startswith(MANAGED_KEY_PREFIX) or self.upstream is None:
            return None
        key_hash = fingerprint(key)
        found = self.cache.get(key_hash)
        if found is not None:
            return found
        resp = await self.upstream.post_json(
            "/v1/keys/resolve", {"key_hash": key_hash}, self.settings.metrics_timeout_s
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise CairnError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                f"The API key could not be checked: the query service answered {resp.status_code}.",
            )
        row = resp.json()
        groups = tuple(row["groups"])
        identity = from_claims(row["user"], row["name"], groups, "managed-key", self.settings)
        if row["admin"] and not identity.admin:
            identity = Identity(identity.user, identity.name, groups, True, "managed-key")
        self.cache.put(key_hash, identity)
        return identity

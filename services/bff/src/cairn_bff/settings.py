"""BFF settings: one pydantic-settings class, env prefix `BFF_`, documented in .env.example (# BEGIN bff)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Literal

from cairn_core import split_urls
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(text: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(n.strip(), strict=False) for n in text.split(",") if n.strip()]


class BffSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BFF_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"

    # Upstreams.
    qs_url: str = "http://127.0.0.1:8081"
    # Several QS replicas, comma-separated: requests take turns, and one that cannot be connected to is
    # skipped (nothing was sent to it). Set, it replaces BFF_QS_URL.
    qs_urls: str = ""
    gateway_url: str = "http://127.0.0.1:8082"
    upstream_timeout_s: float = Field(120.0, gt=0)  # a whole non-stream answer / gap between stream bytes
    connect_timeout_s: float = Field(5.0, gt=0)
    metrics_timeout_s: float = Field(2.0, gt=0)  # dashboard scrapes of the services' /metrics
    # The dashboard's charts: the services' /metrics are sampled this often, and the last
    # BFF_DASHBOARD_HISTORY_S kept (in Redis with CAIRN_REDIS_URL, shared by replicas). 0 = no sampling.
    dashboard_sample_s: float = Field(10.0, ge=0)
    dashboard_history_s: float = Field(3600.0, gt=0)
    # Sent on every hop to QS and the gateway, which require it when it is set (cairn_core _auth).
    internal_token: SecretStr | None = Field(None, validation_alias="CAIRN_INTERNAL_TOKEN")

    # Auth: API keys for programmatic clients; local mode lets the page on loopback in without one.
    api_keys: SecretStr = SecretStr("")  # comma-separated
    local_mode: bool = True
    local_networks: str = "127.0.0.0/8,::1/128"  # clients that count as "local" in local mode
    # Each network listed is one client for the limits kept per address (failed logins, keyless requests):
    # any local process can send from any of 16 million loopback addresses (127.x.y.z), so one bucket per
    # exact address would let it sidestep both. CIDRs, comma-separated; empty = every address on its own.
    one_client_networks: str = "127.0.0.0/8,::1/128"

    # Users, groups and permissions (docs/operations.md). Members of these groups (comma-separated) are
    # admins: they read every collection, manage permissions and API keys, and open the audit log.
    admin_groups: str = ""
    # A managed API key QS has named is believed this long without asking again: a revoked key stops
    # working within it. 0 = ask QS on every request.
    key_cache_s: float = Field(30.0, ge=0)
    # A reverse proxy that signs users in (oauth2-proxy, Authelia, Pomerium…) names them in these headers;
    # believed only from BFF_TRUSTED_PROXIES, and only when this is on.
    proxy_auth: bool = False
    proxy_user_header: str = "X-Forwarded-User"
    proxy_groups_header: str = "X-Forwarded-Groups"
    proxy_name_header: str = "X-Forwarded-Preferred-Username"
    # OpenID Connect login (authorization code + PKCE): the issuer (its /.well-known/openid-configuration is
    # read), this client's id and secret, and which claims name the user, their name and their groups.
    oidc_issuer: str = ""  # empty = no OIDC login
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile email"
    oidc_user_claim: str = "sub"
    oidc_name_claim: str = "name"
    oidc_groups_claim: str = "groups"
    # The public URL of /auth/callback as registered at the provider; empty = from the request's own URL.
    oidc_redirect_url: str = ""
    # Signs the login cookie (HttpOnly, SameSite=Lax); the same on every replica. Required with OIDC.
    session_secret: SecretStr | None = None
    session_max_age_s: int = Field(8 * 3600, ge=60)
    # Send the login cookie over HTTPS only (on behind TLS; off for http://localhost).
    cookie_secure: bool = False

    # The audit page (/audit) and /api/admin/*: the key an operator types there, and the token the BFF sends to
    # QS's /admin/* (QS_ADMIN_TOKEN). `make up` writes one CAIRN_ADMIN_TOKEN that serves as both. Unset: off.
    admin_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BFF_ADMIN_KEY", "CAIRN_ADMIN_TOKEN")
    )
    qs_admin_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("BFF_QS_ADMIN_TOKEN", "QS_ADMIN_TOKEN", "CAIRN_ADMIN_TOKEN")
    )

    # Rate limit per API key (or per client IP without a key): a token bucket.
    rate_limit_per_minute: float = Field(120.0, ge=0)  # 0 = off
    rate_limit_burst: int = Field(30, ge=1)
    # Failed authentications per client IP, so keys cannot be guessed at speed; beyond them 429.
    auth_failures_per_minute: float = Field(10.0, ge=0)  # 0 = off
    auth_failures_burst: int = Field(10, ge=1)
    # Chat, search and upload requests in flight per API key (or client IP): one client cannot take every
    # generation slot and the whole queue of the gateway (LLM_MAX_CONCURRENCY + LLM_QUEUE_SIZE = 7).
    max_inflight_per_client: int = Field(3, ge=0)  # 0 = off

    # Shared state (docs/operations.md): with Redis the limits above hold across BFF replicas, not per
    # process. Unreachable at startup: the BFF refuses to start; during a request: the limit fails open.
    redis_url: SecretStr | None = Field(None, validation_alias="CAIRN_REDIS_URL")
    # A request's in-flight ticket in Redis stops counting after this, even if its replica died mid-request.
    # Longer than any request should run (streams end within the gateway's timeouts).
    inflight_ttl_s: float = Field(300.0, gt=0)

    # Who the BFF believes and serves (docs/operations.md, Security).
    # Host headers served besides loopback names and addresses: a DNS-rebinding page reaches the BFF under
    # its own host name, so that name must be refused. Comma-separated; "*.example.com" matches subdomains,
    # "*" turns the check off.
    allowed_hosts: str = ""
    # Proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated); empty = nobody.
    trusted_proxies: str = ""

    # Slow and greedy clients.
    header_timeout_s: float = Field(10.0, gt=0)  # request headers must be complete by then: 408
    body_timeout_s: float = Field(60.0, gt=0)  # the whole request body: 408
    max_connections: int = Field(1000, ge=1)  # open connections at once; beyond them 503

    # CORS: closed unless origins are listed (comma-separated, exact, e.g. https://chat.example.com).
    cors_origins: str = ""

    max_body_bytes: int = Field(12_000_000, ge=1_000)  # uploads go through here; QS has its own limit

    @model_validator(mode="after")
    def _login_is_complete(self) -> BffSettings:
        if self.oidc_issuer and not (self.oidc_client_id and self.session_secret):
            raise ValueError(
                "BFF_OIDC_ISSUER needs BFF_OIDC_CLIENT_ID and BFF_SESSION_SECRET (the login cookie's signing key)."
            )
        return self

    @cached_property
    def qs_url_list(self) -> list[str]:
        return split_urls(self.qs_urls, self.qs_url)

    @cached_property
    def dashboard_points(self) -> int:
        """How many points the history holds: one per sample over BFF_DASHBOARD_HISTORY_S (360 by default)."""
        return (
            max(1, round(self.dashboard_history_s / self.dashboard_sample_s))
            if self.dashboard_sample_s
            else 1
        )

    @cached_property
    def key_list(self) -> list[bytes]:
        return [k.strip().encode() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @cached_property
    def local_network_list(self) -> list[IPNetwork]:
        return _networks(self.local_networks)

    @cached_property
    def one_client_network_list(self) -> list[IPNetwork]:
        return _networks(self.one_client_networks)

    @cached_property
    def allowed_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]

    @cached_property
    def admin_group_list(self) -> list[str]:
        return [g.strip() for g in self.admin_groups.split(",") if g.strip()]

    @cached_property
    def trusted_proxy_list(self) -> list[IPNetwork]:
        return _networks(self.trusted_proxies)

    @property
    def local_mode_on(self) -> bool:
        """Local mode holds only while no login is configured: with OIDC or a signing proxy, a request from
        loopback may be that proxy's, and so anyone's."""
        return self.local_mode and not self.oidc_issuer and not self.proxy_auth

    @cached_property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

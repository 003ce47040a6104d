"""The factories for outgoing HTTP clients, created in each app's lifespan.

- `make_http_client`: the `httpx.AsyncClient` of the BFF → QS → gateway hops. The default transport is aiohttp
  through `httpx-aiohttp`: measured in `make bench` (docs/benchmarks.md), a relay on httpcore's pool loses most
  of its throughput at 64 concurrent streams on this class of machine, while the aiohttp transport keeps the
  httpx API and far more of the throughput. `transport="httpx"` selects httpcore.
- `make_aiohttp_session`: the gateway → model server hop, the one every token crosses. There even httpx's own
  request/response layers were 40 % of the gateway's CPU per relayed request, so that hop talks aiohttp
  directly (measured both ways in one run, docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
import httpx

Transport = Literal["aiohttp", "httpx"]

# How long an idle pooled connection is kept. Servers close idle keep-alive connections too (uvicorn after 5 s,
# so every Cairn service), and a client that keeps one longer can send a request just as the server closes it:
# the request fails without an answer. Closing ours first, a second earlier, avoids that race.
IDLE_KEEPALIVE_S = 4.0


class _NoCookies(httpx.Cookies):
    """A jar that never stores anything."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ServiceClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` without a cookie jar: the client of the BFF → QS and QS → gateway hops.

    One client serves every user of a process, so a cookie that one upstream answer sets must not ride along
    on the next user's request. It also skips the copy of each response into a urllib-style request that
    httpx makes to feed its jar (~5 % of the gateway's CPU per relayed request, measured when the gateway's
    model-server hop still used httpx; that hop is `make_aiohttp_session` now, whose jar is a dummy too).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, value: object) -> None:
        raise ValueError("a ServiceClient keeps no cookies; send a Cookie header if one is needed")


def make_http_client(
    base_url: str = "",
    *,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
    max_connections: int = 256,
    headers: dict[str, str] | None = None,
    transport: Transport = "aiohttp",
) -> ServiceClient:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=IDLE_KEEPALIVE_S,
    )
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return ServiceClient(
            base_url=base_url,
            timeout=timeout,
            headers=headers,
            transport=AiohttpTransport(limits=limits, trust_env=False),
        )
    return ServiceClient(base_url=base_url, timeout=timeout, limits=limits, headers=headers, trust_env=False)


def make_aiohttp_session(
    *, max_connections: int = 256, connect_timeout_s: float = 5.0
) -> aiohttp.ClientSession:
    """A pooled aiohttp session with no cookie jar (see ServiceClient) and no proxy settings from the env."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections, ttl_dns_cache=300, keepalive_timeout=IDLE_KEEPALIVE_S
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
        trust_env=False,
    )

"""The one factory for outgoing HTTP clients.

Every hop (BFF → QS → gateway → provider) uses an `httpx.AsyncClient` created here, in the app's lifespan.
The default transport is aiohttp through `httpx-aiohttp`: measured in `make bench` (docs/benchmarks.md), a relay
on httpcore's pool loses most of its throughput at 64 concurrent streams on this class of machine, while the
aiohttp transport keeps the httpx API and far more of the throughput. `transport="httpx"` selects httpcore.
"""

from __future__ import annotations

from typing import Literal

import httpx

Transport = Literal["aiohttp", "httpx"]


def make_http_client(
    base_url: str = "",
    *,
    timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
    max_connections: int = 256,
    headers: dict[str, str] | None = None,
    transport: Transport = "aiohttp",
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        return httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers=headers,
            transport=AiohttpTransport(limits=limits, trust_env=False),
        )
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout, limits=limits, headers=headers, trust_env=False
    )

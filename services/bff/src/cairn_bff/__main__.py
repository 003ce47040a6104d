"""`python -m cairn_bff` / `cairn-bff`: serve the BFF and the web page with uvicorn on BFF_HOST:BFF_PORT."""

from __future__ import annotations

from cairn_core import serve

from .app import create_app
from .settings import BffSettings


def main() -> None:
    settings = BffSettings()
    serve(
        create_app(settings),
        settings.host,
        settings.port,
        # BFF_TRUSTED_PROXIES is applied inside the app (security.TrustedProxyMiddleware), which keeps the peer.
        trusted_proxies="",
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
    )


if __name__ == "__main__":
    main()

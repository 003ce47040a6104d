"""`python -m cairn_gateway` / `cairn-gateway`: serve the gateway with uvicorn on LLM_HOST:LLM_PORT."""

from __future__ import annotations

from cairn_core import require_token_off_loopback, serve

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    # A master key closes the gateway as well as the internal token does.
    require_token_off_loopback("gateway", settings.host, settings.internal_token or settings.master_key)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()

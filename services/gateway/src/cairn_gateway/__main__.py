"""`python -m cairn_gateway` / `cairn-gateway`: serve the gateway with uvicorn on LLM_HOST:LLM_PORT."""

from __future__ import annotations

from cairn_core import serve

from .app import create_app
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()

"""`python -m cairn_bff` / `cairn-bff`: serve the BFF and the web page with uvicorn on BFF_HOST:BFF_PORT."""

from __future__ import annotations

from cairn_core import serve

from .app import create_app
from .settings import BffSettings


def main() -> None:
    settings = BffSettings()
    serve(create_app(settings), settings.host, settings.port, proxy_headers=True)


if __name__ == "__main__":
    main()

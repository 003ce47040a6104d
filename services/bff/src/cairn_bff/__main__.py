"""`python -m cairn_bff` / `cairn-bff`: serve the BFF and the web page with uvicorn on BFF_HOST:BFF_PORT."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import BffSettings


def main() -> None:
    settings = BffSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()

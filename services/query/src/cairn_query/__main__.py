"""`python -m cairn_query` / `cairn-query`: serve the query service with uvicorn on QS_HOST:QS_PORT."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import QuerySettings


def main() -> None:
    settings = QuerySettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()

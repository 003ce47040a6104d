"""`python -m cairn_query` / `cairn-query`: serve the query service with uvicorn on QS_HOST:QS_PORT."""

from __future__ import annotations

from cairn_core import require_token_off_loopback, serve

from cairn_query.http.app import create_app
from cairn_query.settings import QuerySettings


def main() -> None:
    settings = QuerySettings()
    require_token_off_loopback("query service", settings.host, settings.internal_token)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()

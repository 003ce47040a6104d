"""Tooling shared by Cairn's tests and benchmarks: real processes on loopback, never mocks."""

from .postgres import PostgresServer, postgres, start_postgres
from .processes import ServerProcess, free_port, start_server, wait_http_ok
from .sse import parse_sse

__all__ = [
    "PostgresServer",
    "ServerProcess",
    "free_port",
    "parse_sse",
    "postgres",
    "start_postgres",
    "start_server",
    "wait_http_ok",
]

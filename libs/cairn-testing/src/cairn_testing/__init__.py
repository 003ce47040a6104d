"""Tooling shared by Cairn's tests and benchmarks: real processes on loopback, never mocks."""

from .postgres import PostgresServer, postgres, start_postgres
from .processes import ServerProcess, free_port, start_server, wait_http_ok
from .redis_server import RedisServer, start_redis
from .sse import parse_sse

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerProcess",
    "free_port",
    "parse_sse",
    "postgres",
    "start_postgres",
    "start_redis",
    "start_server",
    "wait_http_ok",
]

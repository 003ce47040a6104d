"""Tooling shared by Cairn's tests and benchmarks: real processes on loopback, never mocks."""

from .oidc_provider import start_oidc_provider
from .postgres import PostgresServer, postgres, start_postgres
from .processes import ServerProcess, free_port, start_server, wait_for, wait_http_ok
from .redis_server import RedisServer, start_redis
from .sse import parse_sse
from .stack import gateway_env, start_fake_openai, start_gateway

__all__ = [
    "PostgresServer",
    "RedisServer",
    "ServerProcess",
    "free_port",
    "gateway_env",
    "parse_sse",
    "postgres",
    "start_fake_openai",
    "start_gateway",
    "start_oidc_provider",
    "start_postgres",
    "start_redis",
    "start_server",
    "wait_for",
    "wait_http_ok",
]

"""Tooling shared by Cairn's tests and benchmarks: real processes on loopback, never mocks."""

from .processes import ServerProcess, free_port, start_server, wait_http_ok

__all__ = ["ServerProcess", "free_port", "start_server", "wait_http_ok"]

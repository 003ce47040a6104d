"""Fixtures: the fake upstream as a real process, the BFF as a real process or in-process app."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_bff.app import create_app
from cairn_bff.settings import BffSettings
from cairn_testing import ServerProcess, start_server
from cairn_testing import parse_sse as sse  # noqa: F401 - re-exported for the tests

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def upstream() -> Iterator[ServerProcess]:
    srv = start_server(
        "fake-upstream",
        ["fake_upstream", "--port", "{port}"],
        env={"PYTHONPATH": str(HERE)},
        health_path="/healthz",
    )
    yield srv
    srv.stop()


def start_bff(qs_url: str, gateway_url: str, **env: str) -> ServerProcess:
    base = {"BFF_PORT": "{port}", "BFF_QS_URL": qs_url, "BFF_GATEWAY_URL": gateway_url}
    return start_server("bff", ["cairn_bff"], env={**base, **env}, health_path="/healthz")


@pytest.fixture(scope="module")
def bff(upstream: ServerProcess) -> Iterator[ServerProcess]:
    srv = start_bff(upstream.url, upstream.url)
    yield srv
    srv.stop()


@asynccontextmanager
async def app_client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The BFF app in this process, inside its lifespan (ASGITransport does not run it).

    Its startup freezes the heap and raises the collector's threshold, as a served app should; both are put
    back afterwards, so that the tests after it run with the collector pytest started with."""
    app = create_app(BffSettings(**settings))
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
            ) as client,
        ):
            yield client
    finally:
        if not frozen:
            gc.unfreeze()
        gc.set_threshold(*threshold)

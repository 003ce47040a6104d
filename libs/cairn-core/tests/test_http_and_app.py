from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import httpx
import pytest
from cairn_core import make_http_client, service_app
from cairn_core.clients import ServiceClient
from starlette.applications import Starlette
from starlette.testclient import TestClient


async def test_service_client_never_carries_a_cookie_to_the_next_request() -> None:
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=alice; Path=/"}, json={})

    async with ServiceClient(transport=httpx.MockTransport(upstream)) as client:
        await client.get("http://upstream.test/a")
        await client.get("http://upstream.test/b")
        assert not client.cookies
    assert seen == [None, None]
    # A plain httpx client would have replayed alice's cookie on the second call.
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as plain:
        await plain.get("http://upstream.test/a")
        await plain.get("http://upstream.test/b")
    assert seen[-1] == "session=alice"


async def test_every_transport_gets_the_cookieless_client() -> None:
    for transport in ("aiohttp", "httpx"):
        client = make_http_client(transport=transport)  # type: ignore[arg-type]
        try:
            assert isinstance(client, ServiceClient)
            with pytest.raises(ValueError):
                client.cookies = {"a": "b"}
        finally:
            await client.aclose()


def test_the_startup_heap_is_frozen_once_the_lifespan_has_started() -> None:
    before_threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, *before_threshold[1:])  # CPython's default: an app started earlier raised it
    frozen_during_startup: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        frozen_during_startup.append(gc.get_freeze_count())
        yield

    settings = SimpleNamespace(log_level="INFO", max_body_bytes=1024)
    app = service_app("cairn-tests", settings, routes=[], lifespan=lifespan)
    try:
        with TestClient(app):
            assert frozen_during_startup == [0]  # the service's own startup runs first ...
            assert gc.get_freeze_count() > 0  # ... then everything it built is frozen
            assert gc.get_threshold()[0] > 700
    finally:
        gc.unfreeze()
        gc.set_threshold(*before_threshold)

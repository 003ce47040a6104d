"""The least a Python relay can do: the floor that `make bench` reads the gateway against.

One raw ASGI app on the gateway's own server (uvicorn, httptools, uvloop) and its own client
(`cairn_core.make_aiohttp_session`): it forwards the body to `--upstream` and relays the answer's bytes as they
arrive. No validation, limits, retries, logs, traces or metrics. On a small machine the load generator, the
upstream and the relay share the same cores, so a ratio against the direct call means little alone; set
against this floor it shows what the gateway's features cost and what any relay would.

Run: `python -m cairn_testing.floor_relay --port 8099 --upstream http://127.0.0.1:8090`
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn
from cairn_core import make_aiohttp_session


class FloorRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.http: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert self.http is not None
        headers = {"Content-Type": "application/json"}
        async with self.http.post(self.upstream + scope["path"], data=body, headers=headers) as resp:
            content_type = resp.headers.get("Content-Type", "application/octet-stream").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [(b"content-type", content_type)],
                }
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.http = make_aiohttp_session(max_connections=512)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.http is not None:
                    await self.http.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        FloorRelay(args.upstream), port=args.port, log_level="warning", access_log=False, proxy_headers=False
    )


if __name__ == "__main__":
    main()

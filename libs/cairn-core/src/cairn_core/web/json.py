"""JSON on the request path: orjson, for every body and SSE frame a service writes or reads.

The standard library's encoder and decoder were a tenth of the gateway's CPU per relayed stream (each token is
one upstream frame decoded and one frame encoded; py-spy, docs/benchmarks.md), and an embeddings response is
thousands of floats. orjson writes the same compact UTF-8 JSON, several times faster. Keys that must be
stable across versions (cache keys) keep using `json` with `sort_keys`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse

# A subclass of json.JSONDecodeError (and so of ValueError): existing `except ValueError` still catch it.
JSONDecodeError = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON. NaN and infinities become null rather than invalid JSON."""
    return orjson.dumps(obj)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; invalid UTF-8 raises `JSONDecodeError` too."""
    return orjson.loads(data)


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSONResponse, rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

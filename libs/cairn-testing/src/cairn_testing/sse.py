"""Parse a whole SSE body in tests, with `cairn_core`'s decoder: the one helper every test suite uses."""

from __future__ import annotations

from typing import Any

from cairn_core import decode_sse, json_loads


def parse_sse(body: str | bytes) -> list[tuple[str, Any]]:
    """(event, data) pairs; data is parsed JSON, or the raw string when it is not JSON (e.g. `[DONE]`)."""
    events: list[tuple[str, Any]] = []
    for msg in decode_sse(body):
        try:
            events.append((msg.event, json_loads(msg.data)))
        except ValueError:
            events.append((msg.event, msg.data))
    return events

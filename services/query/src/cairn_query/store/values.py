"""How values are written on both backends: the time stamps, the NUL rule, JSON columns and unit vectors.

A leaf module (it imports nothing of the store), so that the tables built on it (conversations.py, audit.py,
sql.py) and the protocol in base.py can all use it without importing one another in a circle.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def like_pattern(q: str) -> str:
    """`q` as a LIKE pattern matching it anywhere: its own % and _ taken literally (escaped with \\)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def scrub(value: Any) -> Any:
    """`value` as both backends store it: NUL (U+0000) becomes U+FFFD in every string, inside lists, tuples
    and JSON objects too. PostgreSQL text and JSONB cannot hold NUL (psycopg raises DataError), SQLite can; it
    means nothing in a document, a title or a question, so both backends store the same thing. Each backend
    passes every bound parameter through this (sqlite.py's connection, postgres.py's cursor) and every JSON
    value through `to_json`, so no caller has to remember it."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v) for v in value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


def to_json(value: Any) -> str:
    """A JSON column's text on both backends: scrubbed first, since json.dumps writes NUL as an escape that
    JSONB refuses and SQLite's json_extract turns back into NUL."""
    return json.dumps(scrub(value), ensure_ascii=False)


def normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def unit_rows(vectors: list[list[float]] | np.ndarray) -> np.ndarray:
    """One chunk's vectors as float32 rows, each L2-normalised (stored so: cosine similarity is a dot product)."""
    a = np.asarray(vectors, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms == 0, 1, norms)

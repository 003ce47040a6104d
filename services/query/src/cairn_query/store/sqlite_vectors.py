"""SQLite's vector search: every stored vector in one float32 matrix in memory, searched by numpy.

A chunk's vectors are one BLOB of shape (n, dims), each row L2-normalised, so cosine similarity is a dot
product. The matrix is rebuilt when the corpus version in `meta` changes (so several processes on one file
agree); at tens of thousands of chunks a matrix-vector product takes milliseconds, below what an ANN index
would save (see `make bench`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cairn_query.store.values import unit_rows


def as_blob(vectors: list[list[float]]) -> bytes:
    """One chunk's vectors, each L2-normalised, as one float32 blob of shape (n, dims)."""
    return unit_rows(vectors).tobytes()


def as_rows(blob: bytes, dims: int | None) -> np.ndarray:
    flat = np.frombuffer(blob, dtype=np.float32)
    return flat.reshape(-1, dims or len(flat))


@dataclass
class _Loaded:
    """Every stored vector as a row; a chunk's rows are contiguous, starting at `starts[i]` for `chunks[i]`."""

    version: int = -1
    model: str | None = None
    rowids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # chunk rowid per row
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    masks: dict[str, np.ndarray] = field(default_factory=dict)


class VectorIndex:
    """The matrix of one store. `load()` gives (model, dims, [(rowid, blob)]) of the stored vectors;
    `allowed(collection, filters, collections)` the chunk rowids a scope allows (None: all), `collections` being
    the caller's permission filter (None: every collection, []: none)."""

    def __init__(
        self,
        load: Callable[[], tuple[str | None, int | None, list[tuple[int, bytes]]]],
        version: Callable[[], int],
        allowed: Callable[[str | None, dict[str, Any], list[str] | None], np.ndarray | None],
    ) -> None:
        self._load, self._version, self._allowed = load, version, allowed
        self._lock = threading.Lock()
        self._index = _Loaded()

    def _current(self) -> _Loaded:
        version = self._version()
        with self._lock:
            if self._index.version != version:
                model, dims, rows = self._load()
                if rows:
                    blocks = [as_rows(blob, dims) for _, blob in rows]
                    sizes = np.fromiter((len(b) for b in blocks), dtype=np.int64, count=len(blocks))
                    chunks = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
                    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
                    index = _Loaded(version, model, np.repeat(chunks, sizes), np.vstack(blocks))
                    index.starts, index.chunks = starts, chunks
                else:
                    index = _Loaded(version, model)
                self._index = index
            return self._index

    def _mask(
        self,
        index: _Loaded,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None,
    ) -> np.ndarray | None:
        """Which rows of the matrix a collection/filter/permission scope allows; cached per corpus version
        (scopes repeat: a user's readable collections are the same on each of their questions)."""
        if not collection and not filters and collections is None:
            return None
        key = json.dumps([collection, filters, collections], sort_keys=True)
        with self._lock:
            cached = index.masks.get(key)
        if cached is None:
            allowed = self._allowed(collection, filters, collections)
            cached = (
                np.isin(index.rowids, allowed) if allowed is not None else np.ones(len(index.rowids), bool)
            )
            with self._lock:
                if len(index.masks) >= 64:
                    index.masks.clear()
                index.masks[key] = cached
        return cached

    def search(
        self,
        vector: list[float],
        model: str,
        limit: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None = None,
    ) -> list[tuple[int, float]] | None:
        """Top chunks by cosine similarity, each scoring its best vector; None when the stored vectors come
        from another model."""
        index = self._current()
        if index.model is None or len(index.rowids) == 0:
            return []
        q = unit_rows(vector)[0]
        if index.model != model or index.matrix.shape[1] != q.shape[0]:
            return None
        sims = index.matrix @ q
        mask = self._mask(index, collection, filters, collections)
        if mask is not None:
            sims = np.where(mask, sims, -np.inf)
        best = np.maximum.reduceat(sims, index.starts)
        k = min(limit, len(best))
        top = np.argpartition(-best, k - 1)[:k]
        top = top[np.argsort(-best[top])]
        return [(int(index.chunks[i]), float(best[i])) for i in top if np.isfinite(best[i])]

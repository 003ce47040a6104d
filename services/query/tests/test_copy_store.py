"""scripts/copy_store.py: a SQLite store copied into a real PostgreSQL answers the same as the original."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cairn_query.store import PostgresStore, SQLiteStore

from .test_store_backends import doc

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "copy_store.py"


def _copy(sqlite_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(sqlite_path), url], capture_output=True, text=True, timeout=120
    )


def test_copy_keeps_documents_chunks_vectors_owners_and_meta(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "s.sqlite3"
    src = SQLiteStore(str(path))
    fruit = doc("a", ["red apples", "green pears"], [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0]]], title="Fruit")
    fruit.sections = [None, "Orchard › Pears"]
    fruit.pages = [1, 2]
    fruit.original = ("application/pdf", b"%PDF-1.4 fruit\x00\xff")
    src.upsert(fruit)
    src.upsert(doc("b", ["the vpn client"], [[[0.6, 0.8, 0]]], collection="it", metadata={"team": "it"}))
    src.upsert(doc("c", ["a page upload"], [[[0, 0.6, 0.8]]], owner="key:alice"))
    src.delete_document("b")
    src.upsert(
        doc("b", ["the vpn client again"], [[[0.6, 0.8, 0]]], collection="it", metadata={"team": "it"})
    )
    queries = [([1, 0, 0.2], None, {}), ([0, 1, 0], "it", {}), ([0, 0, 1], None, {"team": "it"})]
    expected = {
        "docs": src.list_documents(None, 10, 0),
        "bm25": [src.bm25(q, 5, None, {}) for q in ("apples", "vpn", "fruit", "orchard")],
        "chunks": [src.get_chunk(c) for c in ("a:0", "a:1")],
        "vec": [src.vector_search(v, "m1", 5, c, f) for v, c, f in queries],
        "vectors": src.vectors_of(["a:0", "a:1", "b:0"]),
        "owners": [src.owner_of(d) for d in "abc"],
        "model": src.embed_model(),
        "version": src.version(),
    }
    src.close()

    result = _copy(path, pg_url)
    assert result.returncode == 0, result.stderr
    assert "copied 3 documents, 4 chunks, 5 vectors" in result.stdout

    dst = PostgresStore(pg_url)
    try:
        assert dst.list_documents(None, 10, 0) == expected["docs"]
        assert [dst.bm25(q, 5, None, {}) for q in ("apples", "vpn", "fruit", "orchard")] == expected["bm25"]
        assert [dst.get_chunk(c) for c in ("a:0", "a:1")] == expected["chunks"]  # sections too
        for (v, c, f), want in zip(queries, expected["vec"], strict=True):
            got = dst.vector_search(v, "m1", 5, c, f)
            assert got is not None and want is not None
            assert [r for r, _ in got] == [r for r, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
        vectors = dst.vectors_of(["a:0", "a:1", "b:0"])
        assert set(vectors) == set(expected["vectors"])
        assert all(np.allclose(vectors[k], v) for k, v in expected["vectors"].items())
        assert [dst.owner_of(d) for d in "abc"] == expected["owners"]
        assert (
            dst.original("a") == ("application/pdf", b"%PDF-1.4 fruit\x00\xff") and dst.original("c") is None
        )
        assert dst.embed_model() == expected["model"] and dst.version() > expected["version"]
        # New rows carry on after the copied rowids.
        dst.upsert(doc("d", ["fresh"], [[[1, 0, 0]]]))
        assert dst.get_chunk("d:0").rowid > max(dst.get_chunk(c).rowid for c in ("a:0", "a:1", "b:0", "c:0"))  # type: ignore[union-attr]
    finally:
        dst.close()

    again = _copy(path, pg_url)  # into a store that holds documents now: refused, nothing written
    assert again.returncode == 1 and "already holds documents" in again.stderr

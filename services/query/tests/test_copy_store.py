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


def test_copy_keeps_conversations_audit_permissions_keys_and_connectors(tmp_path: Path, pg_url: str) -> None:
    """Nothing but the corpus was copied before: a move to Postgres lost every conversation, the audit chain,
    permissions, API keys and connectors."""
    from cairn_query.governance.audit import verify_chain
    from cairn_query.store.connectors import ItemRow, SourceRow

    from .test_audit_store import entry

    path = tmp_path / "s.sqlite3"
    src = SQLiteStore(str(path))
    src.upsert(doc("a", ["red apples"], [[[1, 0, 0]]], collection="hr"))
    conv = src.conversations.create("user:ann", "Apples")
    src.conversations.add_message("user:ann", conv["id"], "user", "which apples? \x00", "r1")
    src.conversations.add_message("user:ann", conv["id"], "assistant", "red ones", "r2")
    src.conversations.rate("r2", "user:ann", "up", "good")
    for i in range(3):
        src.audit.append(entry(i))
    src.permissions.replace("hr", "user:ann", ["group:hr"], ["user:bob"])
    src.permissions.add_key("k1", "hash-1", "bob", "laptop", ["hr"], False, "user:ann")
    now = "2026-12-07T00:00:00Z"
    src.connectors.create(SourceRow("wiki", "folder", {"path": "/srv"}, "hr", 60.0, True, {}, now, now))
    src.connectors.put_item("wiki", ItemRow("a.md", "a", "v1", "h1", "md", {}))
    expected = {
        "conv": src.conversations.get("user:ann", conv["id"]),
        "perm": src.permissions.get("hr"),
        "keys": src.permissions.api_keys(),
        "items": src.connectors.items("wiki"),
    }
    src.close()

    result = _copy(path, pg_url)
    assert result.returncode == 0, result.stderr
    assert "1 conversations, 2 messages, 3 audit records" in result.stdout

    dst = PostgresStore(pg_url)
    try:
        got = dst.conversations.get("user:ann", conv["id"])
        assert got == {**expected["conv"], "messages": got["messages"]}  # type: ignore[dict-item]
        assert [m["content"] for m in got["messages"]] == ["which apples? \ufffd", "red ones"]  # type: ignore[index]
        assert dst.conversations.ratings(["r2"])["r2"]["rating"] == "up"
        assert dst.permissions.get("hr") == expected["perm"]
        assert dst.permissions.readable(["user:bob"]) == ["hr"]
        assert dst.permissions.api_keys() == expected["keys"]
        assert dst.permissions.key_by_hash("hash-1")["user"] == "bob"  # type: ignore[index]
        assert dst.connectors.get("wiki").config == {"path": "/srv"}  # type: ignore[union-attr]
        assert dst.connectors.items("wiki") == expected["items"]
        dst.audit.append(entry(3))  # the chain goes on from the copied head
        report = verify_chain(*dst.audit.chain())
        assert report.ok and report.records == 4
        dst.conversations.add_message("user:ann", conv["id"], "user", "more?", "r3")  # ids carry on
    finally:
        dst.close()

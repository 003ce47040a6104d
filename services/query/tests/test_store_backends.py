"""One suite, run against both store backends: the SQLite file and a real PostgreSQL with pgvector (pgserver).

Whatever QS relies on (store.base.Store) must behave the same on each, so a test here names no backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cairn_query.settings import QuerySettings
from cairn_query.store import (
    OPERATOR,
    NewDocument,
    NotOwner,
    SchemaTooNew,
    SQLiteStore,
    Store,
    StoreFull,
    open_store,
)
from cairn_query.store import pg_schema as pg_store
from cairn_query.store import sqlite as sqlite_store
from cairn_testing import start_server


def doc(
    doc_id: str,
    chunks: list[str],
    vectors: list[list[list[float]]] | None = None,
    *,
    model: str = "m1",
    collection: str = "default",
    title: str | None = None,
    metadata: dict | None = None,
    owner: str = OPERATOR,
) -> NewDocument:
    return NewDocument(
        doc_id,
        collection,
        title,
        None,
        metadata or {},
        "\n\n".join(chunks),
        f"hash-{doc_id}-{len(chunks)}-{chunks[0]}",
        chunks,
        vectors,
        model if vectors is not None else None,
        owner,
    )


def rowid(store: Store, chunk_id: str) -> int:
    chunk = store.get_chunk(chunk_id)
    assert chunk is not None
    return chunk.rowid


def test_open_store_picks_the_backend_from_the_url(target: str, store: Store) -> None:
    assert isinstance(store, SQLiteStore) == (not target.startswith("postgresql://"))
    known = sqlite_store.SCHEMA_VERSION if isinstance(store, SQLiteStore) else pg_store.SCHEMA_VERSION
    assert store.meta()["schema_version"] == str(known)


def test_upsert_creates_then_replaces_and_keeps_created_at(store: Store) -> None:
    first, created = store.upsert(doc("a", ["red apples", "green pears"], title="Fruit", metadata={"k": 1}))
    assert created and first["chunks"] == 2 and first["metadata"] == {"k": 1} and first["title"] == "Fruit"
    again, created = store.upsert(doc("a", ["only plums"]))
    assert not created and again["chunks"] == 1 and again["created_at"] == first["created_at"]
    assert store.get_chunk("a:1") is None and store.get_chunk("a:0").text == "only plums"  # type: ignore[union-attr]
    assert store.content_hash("a") == "hash-a-1-only plums" and store.content_hash("zz") is None
    full = store.get_document("a", with_text=True)
    assert full is not None and full["text"] == "only plums" and full["chunk_ids"] == ["a:0"]
    assert store.stats() == {"documents": 1, "chunks": 1}


def test_an_original_file_is_kept_with_its_document_replaced_with_it_and_deleted_with_it(
    store: Store,
) -> None:
    pdf = b"%PDF-1.7\n\x00\xff binary"
    new = doc("a", ["page one"])
    new.original = ("application/pdf", pdf)
    store.upsert(new)
    assert store.original("a") == ("application/pdf", pdf) and store.original_type("a") == "application/pdf"
    store.upsert(doc("a", ["sent again as JSON"]))  # the file no longer matches the text: it goes
    assert store.original("a") is None and store.original_type("a") is None
    store.upsert(new)
    store.delete_document("a")
    assert store.original("a") is None and store.original_type("zz") is None


def test_delete_removes_chunks_keywords_and_vectors(store: Store) -> None:
    store.upsert(doc("a", ["red apples"], [[[1, 0, 0]]]))
    store.upsert(doc("b", ["green pears"], [[[0, 1, 0]]]))
    assert store.delete_document("a") == 1 and store.delete_document("a") is None
    assert store.get_document("a") is None and store.bm25("apples", 5, None, {}) == []
    assert store.vectors_of(["a:0"]) == {}
    hits = store.vector_search([1, 0, 0], "m1", 5, None, {})
    assert [r for r, _ in hits or []] == [rowid(store, "b:0")]
    store.delete_document("b")
    assert store.vector_search([1, 0, 0, 0], "m2", 5, None, {}) == []  # no vectors left to mismatch


def test_owners_scope_writes(store: Store) -> None:
    store.upsert(doc("a", ["mine"], owner="key:alice"))
    with pytest.raises(NotOwner):
        store.upsert(doc("a", ["theirs"], owner="key:bob"))
    with pytest.raises(NotOwner):
        store.delete_document("a", "key:bob")
    assert store.owner_of("a") == (True, "key:alice") and store.owner_of("b") == (False, None)
    store.upsert(doc("a", ["rewritten by the operator"]))  # keeps the client's ownership
    assert store.owner_of("a") == (True, "key:alice")
    assert store.delete_document("a", "key:alice") == 1


def test_list_by_collection_with_limit_and_offset_newest_first(store: Store) -> None:
    for i in range(5):
        store.upsert(doc(f"d{i}", [f"text {i}"], collection="odd" if i % 2 else "even"))
    docs, total = store.list_documents(None, 2, 1)
    assert total == 5 and [d["id"] for d in docs] == ["d3", "d2"]
    docs, total = store.list_documents("even", 10, 0)
    assert total == 3 and [d["id"] for d in docs] == ["d4", "d2", "d0"] and docs[0]["chunks"] == 1
    assert store.list_collections() == [{"name": "even", "documents": 3}, {"name": "odd", "documents": 2}]


def test_list_searches_titles_and_ids_ignoring_case_and_wildcards(store: Store) -> None:
    store.upsert(doc("leave", ["text"], title="Leave Policy"))
    store.upsert(doc("vpn-setup", ["text"], title="VPN"))
    store.upsert(doc("pct", ["text"], title="100% remote_work", collection="hr"))
    assert [d["id"] for d in store.list_documents(None, 10, 0, "policy")[0]] == ["leave"]
    assert [d["id"] for d in store.list_documents(None, 10, 0, "SETUP")[0]] == ["vpn-setup"]
    # % and _ are the user's characters, not wildcards.
    assert [d["id"] for d in store.list_documents(None, 10, 0, "0% r")[0]] == ["pct"]
    assert store.list_documents(None, 10, 0, "vp_")[1] == 0
    assert store.list_documents("default", 10, 0, "remote")[1] == 0
    docs, total = store.list_documents(None, 1, 1, "e")
    assert total == 3 and [d["id"] for d in docs] == ["vpn-setup"]


def test_bm25_ranks_matches_drops_stopwords_and_weighs_the_title(store: Store) -> None:
    store.upsert(doc("a", ["The VPN needs the WireGuard client.", "Printers are on floor two."]))
    store.upsert(doc("b", ["Leave is requested two weeks ahead."], title="VPN leave"))
    store.upsert(doc("c", ["This is not what we do."]))
    assert store.bm25("how do I set up the VPN", 5, None, {})[0] == rowid(store, "a:0")
    assert rowid(store, "b:0") in store.bm25("vpn", 5, None, {})  # through its title
    assert store.bm25("what is the", 5, None, {}) == []  # stopwords only: nothing to match
    assert store.bm25("not", 5, None, {}) == [rowid(store, "c:0")]  # not a stopword here
    assert store.bm25("printer", 5, None, {}) == [rowid(store, "a:1")]  # stemmed
    assert store.bm25("wireguard printers", 1, None, {}) != []


def test_filters_scope_bm25_and_vectors(store: Store) -> None:
    store.upsert(doc("hr", ["leave policy"], [[[1, 0, 0]]], metadata={"team": "hr", "level": 2}))
    store.upsert(doc("it", ["leave the vpn on"], [[[0.9, 0.1, 0]]], collection="it", metadata={"team": "it"}))
    hr, it = rowid(store, "hr:0"), rowid(store, "it:0")
    assert set(store.bm25("leave", 5, None, {})) == {hr, it}
    assert store.bm25("leave", 5, "it", {}) == [it]
    assert store.bm25("leave", 5, None, {"team": "hr"}) == [hr]
    assert store.bm25("leave", 5, None, {"level": 2}) == [hr]
    assert store.bm25("leave", 5, None, {"level": "2"}) == []  # a string is not a number
    assert store.bm25("leave", 5, None, {"team": "nobody"}) == []
    assert store.bm25("leave", 5, None, {"team": None}) == []
    assert [r for r, _ in store.vector_search([1, 0, 0], "m1", 5, None, {}) or []] == [hr, it]
    assert [r for r, _ in store.vector_search([1, 0, 0], "m1", 5, "it", {}) or []] == [it]
    assert [r for r, _ in store.vector_search([1, 0, 0], "m1", 5, None, {"team": "it"}) or []] == [it]
    assert store.vector_search([1, 0, 0], "m1", 5, "default", {"team": "it"}) == []


def test_vector_search_scores_a_chunk_by_its_best_sentence_once(store: Store) -> None:
    store.upsert(doc("a", ["x"], [[[1, 0, 0], [0, 0, 1]]], model="m"))
    store.upsert(doc("b", ["y"], [[[0, 0.6, 0.8]]], model="m"))
    hits = store.vector_search([0, 0, 2], "m", 5, None, {})
    assert hits is not None and len(hits) == 2
    assert hits[0] == (rowid(store, "a:0"), pytest.approx(1.0)) and hits[1][1] == pytest.approx(0.8)
    vectors = store.vectors_of(["a:0", "b:0", "nope"])
    assert set(vectors) == {"a:0", "b:0"} and vectors["a:0"].shape == (2, 3)
    assert np.allclose(vectors["a:0"][1], [0, 0, 1]) and vectors["a:0"].dtype == np.float32


def test_another_models_vectors_are_refused_not_mixed_then_reembedded(store: Store) -> None:
    assert store.vector_search([1, 0, 0], "m1", 5, None, {}) == []  # nothing embedded yet
    store.upsert(doc("a", ["red apples", "green pears"], [[[1, 0, 0]], [[0, 1, 0]]]))
    assert store.embed_model() == ("m1", 3)
    assert store.vector_search([1, 0, 0, 0], "m2", 5, None, {}) is None
    assert store.vector_search([1, 0, 0, 0], "m1", 5, None, {}) is None  # other dimensions
    store.upsert(doc("b", ["blue plums"], [[[0, 0, 1, 0]]], model="m2"))
    assert store.vectors_of(["b:0"]) == {}
    # A failing write (two chunks, one vector) leaves nothing behind.
    version = store.version()
    with pytest.raises(ValueError):
        store.upsert(doc("c", ["one", "two"], [[[1, 0, 0]]]))
    assert store.get_document("c") is None and store.version() == version
    # The reembed path: every chunk's text, then all vectors replaced under the new model.
    texts = store.all_chunk_texts(0, 2)
    assert [t for _, t in texts] == ["red apples", "green pears"]
    rest = store.all_chunk_texts(texts[-1][0], 10)
    assert [t for _, t in rest] == ["blue plums"]
    store.set_vectors("m2", {r: [[1, 0, 0, 0], [0, 1, 0, 0]] for r, _ in [*texts, *rest]}, reset=True)
    assert store.embed_model() == ("m2", 4)
    assert len(store.vector_search([1, 0, 0, 0], "m2", 5, None, {}) or []) == 3
    assert store.vectors_of(["b:0"])["b:0"].shape == (2, 4)
    # Without reset, only the named chunks' vectors change.
    store.set_vectors("m2", {rowid(store, "b:0"): [[0, 0, 0, 1]]}, reset=False)
    assert store.vectors_of(["b:0"])["b:0"].shape == (1, 4)
    assert store.vector_search([0, 0, 0, 1], "m2", 1, None, {}) == [(rowid(store, "b:0"), pytest.approx(1.0))]


def test_every_write_bumps_the_corpus_version(store: Store) -> None:
    v0 = store.version()
    store.upsert(doc("a", ["one"], [[[1, 0]]]))
    store.set_vectors("m1", {rowid(store, "a:0"): [[0, 1]]}, reset=False)
    store.delete_document("a")
    assert store.version() == v0 + 3
    store.delete_document("a")  # nothing there: nothing changed
    assert store.version() == v0 + 3


def test_the_chunk_limit_counts_other_documents_only(store: Store) -> None:
    store.upsert(doc("a", ["1", "2", "3"]), max_chunks=4)
    store.check_room("a", 4, 4)  # replacing a's own three
    with pytest.raises(StoreFull) as info:
        store.check_room("b", 2, 4)
    assert (info.value.stored, info.value.adding, info.value.limit) == (3, 2, 4)
    with pytest.raises(StoreFull):
        store.upsert(doc("b", ["x", "y"]), max_chunks=4)
    assert store.get_document("b") is None
    store.upsert(doc("b", ["x"]), max_chunks=4)
    assert store.stats()["chunks"] == 4


def test_chunks_by_rowid_carry_their_document(store: Store) -> None:
    new = doc("a", ["one", "two"], title="T", metadata={"team": "hr"}, collection="c")
    new.sections = [None, "Leave › Part-time"]
    new.pages = [None, 3]
    store.upsert(new)
    rows = store.chunks_by_rowid([rowid(store, "a:1"), 999_999])
    (chunk,) = rows.values()
    assert chunk.heading == "T › Leave › Part-time"
    assert store.bm25("part-time", 5, None, {}) == [chunk.rowid]  # the section's words are keywords
    assert chunk.public() == {
        "chunk_id": "a:1",
        "document_id": "a",
        "index": 1,
        "title": "T",
        "section": "Leave › Part-time",
        "page": 3,
        "url": None,
        "collection": "c",
        "metadata": {"team": "hr"},
        "text": "two",
    }
    assert store.chunks_by_rowid([]) == {}


def test_reopening_keeps_everything(target: str) -> None:
    s = open_store(QuerySettings(store_url=target))
    s.upsert(doc("a", ["kept across restarts"], [[[1, 0]]]))
    s.close()
    s = open_store(QuerySettings(store_url=target))
    assert s.stats() == {"documents": 1, "chunks": 1} and s.embed_model() == ("m1", 2)
    assert s.bm25("restarts", 5, None, {}) == [rowid(s, "a:0")]
    s.close()


def test_a_newer_schema_is_refused_and_left_alone(target: str) -> None:
    s = open_store(QuerySettings(store_url=target))
    s.close()
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    else:
        with sqlite3.connect(target) as conn:
            conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99, newer than"):
        open_store(QuerySettings(store_url=target))
    # A QS process on it refuses to start, and says why.
    env = {"QS_PORT": "{port}", "QS_STORE_URL": target, "QS_GATEWAY_URL": "http://127.0.0.1:9"}
    with pytest.raises(RuntimeError, match="schema version 99, newer than the"):
        start_server("query", ["cairn_query"], env=env, health_path="/readyz", timeout_s=30)


# The first SQLite schema, as stores written before migrations were numbered have it (no owner column,
# no schema_version).
_OLD_SQLITE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id TEXT PRIMARY KEY, collection TEXT NOT NULL, title TEXT, url TEXT,
    metadata TEXT NOT NULL DEFAULT '{}', text TEXT NOT NULL, content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    text TEXT NOT NULL, embedding BLOB);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, title, tokenize='porter unicode61');
INSERT INTO meta VALUES ('version', '7');
INSERT INTO documents VALUES ('old', 'default', 'Old', NULL, '{}', 'legacy text', 'h', 't', 't', 1);
INSERT INTO chunks VALUES (1, 'old:0', 'old', 0, 'legacy text', NULL);
INSERT INTO chunks_fts (rowid, text, title) VALUES (1, 'legacy text', 'Old');
"""


def test_an_old_sqlite_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SQLITE)
    conn.close()
    store = SQLiteStore(str(path))
    assert store.meta()["schema_version"] == str(sqlite_store.SCHEMA_VERSION) and store.version() == 7
    assert store.audit.count() == 0  # the audit table came with the upgrade
    old = store.get_chunk("old:0")
    assert old is not None and old.section is None and old.heading == "Old"  # chunks from before: no section
    assert old.page is None
    assert store.owner_of("old") == (True, None)  # a legacy row: the local page's
    assert store.bm25("legacy", 5, None, {}) == [1]
    with pytest.raises(NotOwner):
        store.upsert(doc("old", ["taken"], owner="key:x"))
    store.upsert(doc("old", ["mine now"], owner="local"))
    store.close()


def test_postgres_survives_its_connections_being_dropped(pg_url: str) -> None:
    """A database restart or failover kills every connection; the next call must not fail because of it."""
    import psycopg

    store = open_store(QuerySettings(store_url=pg_url, store_pool_min=2))
    try:
        store.upsert(doc("a", ["still here"]))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert store.stats() == {"documents": 1, "chunks": 1}
        assert store.bm25("still", 5, None, {}) == [rowid(store, "a:0")]
    finally:
        store.close()


def test_a_document_without_vectors_is_marked_until_they_are_set(store: Store) -> None:
    store.upsert(doc("v", ["red apples", "green pears"], [[[1.0, 0.0]], [[0.0, 1.0]]]))
    store.upsert(doc("k", ["blue plums", "ripe figs"]))  # the gateway could not embed it
    assert store.get_document("v")["embedded"] is True  # type: ignore[index]
    assert store.get_document("k")["embedded"] is False  # type: ignore[index]
    assert {d["id"]: d["embedded"] for d in store.list_documents(None, 10, 0)[0]} == {"v": True, "k": False}
    assert store.without_vectors(10) == ["k"]
    chunks = store.chunks_of("k")
    assert [c.chunk_id for c in chunks] == ["k:0", "k:1"] and chunks[1].text == "ripe figs"
    store.set_vectors("m1", {c.rowid: [[0.6, 0.8]] for c in chunks}, reset=False)
    assert store.get_document("k")["embedded"] is True and store.without_vectors(10) == []  # type: ignore[index]

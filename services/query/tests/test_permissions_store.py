"""Collection permissions in the store, on both backends (SQLite and a real PostgreSQL with pgvector): the
permission filter (`collections`) inside every corpus read, the permission rows, and the API keys."""

from __future__ import annotations

import pytest
from cairn_query.store import NewDocument, Store

HR = "hr-doc"
ENG = "eng-doc"
VECTOR = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]]


def _doc(doc_id: str, collection: str, text: str) -> NewDocument:
    return NewDocument(
        doc_id,
        collection,
        f"{collection} title",
        None,
        {"team": collection},
        text,
        f"h-{doc_id}",
        [text],
        [VECTOR],
        "m1",
    )


@pytest.fixture()
def corpus(store: Store) -> Store:
    store.upsert(_doc(HR, "hr", "The bonus policy pays ten percent in March."))
    store.upsert(_doc(ENG, "eng", "The bonus policy pays on-call engineers weekly."))
    return store


@pytest.mark.parametrize(
    ("collections", "expected"),
    [(None, {"hr", "eng"}), (["eng"], {"eng"}), (["hr", "eng"], {"hr", "eng"}), ([], set())],
)
def test_every_corpus_read_keeps_to_the_readable_collections(
    corpus: Store, collections: list[str] | None, expected: set[str]
) -> None:
    rows = corpus.chunks_by_rowid(corpus.bm25("bonus policy", 10, None, {}), collections)
    assert {r.collection for r in rows.values()} == expected
    keyword = corpus.chunks_by_rowid(corpus.bm25("bonus policy", 10, None, {}, collections))
    assert {r.collection for r in keyword.values()} == expected
    dense = corpus.vector_search([1.0, 0.0, 0.0], "m1", 10, None, {}, collections) or []
    assert {r.collection for r in corpus.chunks_by_rowid([r for r, _ in dense]).values()} == expected
    docs, total = corpus.list_documents(None, 10, 0, None, collections)
    assert {d["collection"] for d in docs} == expected and total == len(expected)
    assert {c["name"] for c in corpus.list_collections(collections)} == expected
    assert corpus.stats(collections) == {"documents": len(expected), "chunks": len(expected)}
    for doc_id, collection in ((HR, "hr"), (ENG, "eng")):
        visible = collection in expected
        assert (corpus.get_document(doc_id, True, collections) is not None) == visible
        assert (corpus.get_chunk(f"{doc_id}:0", collections) is not None) == visible


def test_a_filter_and_a_collection_narrow_within_what_is_readable(corpus: Store) -> None:
    # Asking for a collection one may not read finds nothing, even by name.
    assert corpus.bm25("bonus", 10, "hr", {}, ["eng"]) == []
    assert corpus.vector_search([1.0, 0.0, 0.0], "m1", 10, "hr", {}, ["eng"]) == []
    assert corpus.list_documents("hr", 10, 0, None, ["eng"]) == ([], 0)
    assert len(corpus.bm25("bonus", 10, None, {"team": "eng"}, ["eng", "hr"])) == 1


def test_permission_rows_name_who_may_read_and_write(store: Store) -> None:
    perms = store.permissions
    assert perms.readable(["user:alice", "group:hr", "*"]) == []
    assert perms.claim("hr", "user:carol") and not perms.claim("hr", "user:mallory")
    before, after = perms.replace("hr", "user:carol", ["group:hr-leads"], ["group:hr"])
    assert before["owner"] == "user:carol" and after == {
        "collection": "hr",
        "owner": "user:carol",
        "writers": ["group:hr-leads"],
        "readers": ["group:hr"],
    }
    perms.replace("all-hands", None, [], ["*"])
    assert perms.readable(["user:alice", "group:hr", "*"]) == ["all-hands", "hr"]
    assert perms.readable(["user:bob", "group:eng", "*"]) == ["all-hands"]
    assert perms.roles_of(["user:dan", "group:hr-leads"], "hr") == {"writer"}
    assert perms.get("nothing") == {"collection": "nothing", "owner": None, "writers": [], "readers": []}


def test_api_keys_are_found_by_hash_and_revoked(store: Store) -> None:
    perms = store.permissions
    made = perms.add_key("k1", "a" * 64, "dave", "Dave", ["eng"], False, "carol")
    assert made["user"] == "dave" and made["groups"] == ["eng"] and "key_hash" not in made
    assert perms.key_by_hash("a" * 64) == made and perms.key_by_hash("b" * 64) is None
    assert [k["id"] for k in perms.api_keys()] == ["k1"]
    assert perms.delete_key("k1") == made and perms.key_by_hash("a" * 64) is None
    assert perms.delete_key("k1") is None

"""Bulk writes and bounded searches: a batch is one transaction on both backends; Postgres writers overlap yet
keep the chunk limit; its keyword search ranks a bounded candidate set and its scoped vector search uses the
index when the scope is large (store/pg_search.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cairn_query.store import OPERATOR, NewDocument, PostgresStore, Store, StoreFull


def doc(
    doc_id: str, chunks: list[str], vectors: list[list[list[float]]] | None = None, **kw: object
) -> NewDocument:
    return NewDocument(
        doc_id,
        str(kw.get("collection", "default")),
        None,
        None,
        {},
        " ".join(chunks),
        f"h-{doc_id}",
        chunks,
        vectors,
        "m" if vectors is not None else None,
        OPERATOR,
    )


def test_a_batch_is_written_in_one_transaction_and_read_back_in_order(store: Store) -> None:
    v0 = store.version()
    got = store.upsert_many([doc("a", ["alpha one", "alpha two"], [[[1, 0]], [[0, 1]]]), doc("b", ["beta"])])
    assert [(d["id"], d["chunks"], d["embedded"], created) for d, created in got] == [
        ("a", 2, True, True),
        ("b", 1, False, True),
    ]
    assert store.version() == v0 + 1
    assert [d["id"] for d in store.list_documents(None, 10, 0)[0]] == ["b", "a"]  # newest (last) first
    assert store.bm25("alpha", 5, None, {}) and store.vectors_of(["a:1"])["a:1"].shape == (1, 2)
    with pytest.raises(StoreFull):  # the limit counts the whole batch; nothing of it is written
        store.upsert_many([doc("c", ["x"]), doc("d", ["y", "z"])], max_chunks=5)
    assert store.get_document("c") is None and store.stats() == {"documents": 2, "chunks": 3}


def test_concurrent_postgres_writers_overlap_but_keep_the_chunk_limit(pg_url: str) -> None:
    store = PostgresStore(pg_url, pool_max=4)
    try:
        store.upsert(doc("seed", ["s"], [[[1, 0, 0]]]))
        errors: list[Exception] = []

        def write(i: int) -> None:
            try:
                store.upsert(doc(f"w{i}", ["a", "b", "c"], [[[1, 0, 0]]] * 3), max_chunks=10)
            except StoreFull as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.stats()["chunks"] == 10 and len(errors) == 3  # 1 + 3 × 3 fit, three more do not
        seqs = [d["id"] for d in store.list_documents(None, 20, 0)[0]]
        assert len(seqs) == 4 and seqs[-1] == "seed"
    finally:
        store.close()


def test_postgres_keyword_search_ranks_a_bounded_set_but_always_the_rows_matching_every_word(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url, fts_candidates=50)
    try:
        store.upsert_many([doc(f"n{i}", [f"common word number {i}"]) for i in range(200)])
        store.upsert(doc("best", ["common rare"]))
        # 201 rows match "common"; only 50 are ranked, but the one matching both words is among them.
        hits = store.bm25("common rare", 10, None, {})
        assert hits[0] == store.get_chunk("best:0").rowid  # type: ignore[union-attr]
        assert len(store.bm25("common", 500, None, {})) == 50
    finally:
        store.close()


def test_postgres_scoped_vector_search_uses_the_index_for_a_large_scope_and_is_never_short(
    pg_url: str,
) -> None:
    rng = np.random.default_rng(3)
    docs = []
    for i in range(60):
        vecs = rng.standard_normal((5, 1, 8)).tolist()
        docs.append(doc(f"d{i}", [f"t{j}" for j in range(5)], vecs, collection="a" if i % 3 else "b"))
    exact, walk = PostgresStore(pg_url, exact_max=10_000), PostgresStore(pg_url, exact_max=0)
    try:
        exact.upsert_many(docs)
        with exact._pool.connection() as conn:
            conn.execute("ANALYZE vectors")  # the planner's count of vectors, which sizes the scope
        q = rng.standard_normal(8).tolist()
        for scope in ("a", "b"):
            want = exact.vector_search(q, "m", 10, scope, {})
            got = walk.vector_search(q, "m", 10, scope, {})
            assert want is not None and got is not None and len(got) == 10
            assert [r for r, _ in got] == [r for r, _ in want]  # a small graph: the walk finds the exact top
            collections = {c.collection for c in walk.chunks_by_rowid([r for r, _ in got]).values()}
            assert collections == {scope}
    finally:
        exact.close()
        walk.close()

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


def _walked(store: PostgresStore, collection: str) -> str:
    """The plan of a scoped walk (pg_search._walk_own's statement). On a table this small the planner rightly
    sorts a scan instead; with sorting off it must pick between the whole index and the collection's."""
    from psycopg import sql

    with store._pool.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_sort = off")
        rows = conn.execute(
            sql.SQL(
                "EXPLAIN SELECT chunk_rowid FROM vectors WHERE collection = {}"
                " ORDER BY embedding <=> %b LIMIT 40"
            ).format(sql.Literal(collection)),
            (np.ones(8, dtype=np.float32),),
        ).fetchall()
    return "\n".join(r[0] for r in rows)


def test_postgres_a_large_collection_gets_its_own_index_which_a_scoped_search_walks(pg_url: str) -> None:
    """pg_indexes: a collection over exact_max vectors and under half of all gets a partial HNSW index; a
    search within it (a chosen collection, a permission filter of one or two) walks that index and finds what
    the exact search finds; a small collection is searched exactly; an emptied collection's index is dropped."""
    from cairn_query.store import pg_indexes

    rng = np.random.default_rng(5)
    sizes = {"big": 40, "mid": 30, "odd name's": 24, "tiny": 2}  # documents of 3 chunks, 1 vector each
    docs = [
        doc(f"{c}-{i}", [f"t{j}" for j in range(3)], rng.standard_normal((3, 1, 8)).tolist(), collection=c)
        for c, n in sizes.items()
        for i in range(n)
    ]
    store, exact = PostgresStore(pg_url, exact_max=50), PostgresStore(pg_url, exact_max=10_000)
    try:
        store.upsert_many(docs)
        store.scope_indexer.run_once(wait=True)  # the thread, poked by the write, may have been first
        # 288 vectors: big (120) is under half (144), mid 90, "odd name's" 72; tiny (6) is under exact_max.
        built = ["big", "mid", "odd name's"]
        assert store.scope_indexer.run_once(wait=True) == []  # nothing more to do
        with store._pool.connection() as conn:
            conn.execute("ANALYZE vectors")
            assert set(pg_indexes.valid(conn)) == {pg_indexes.index_name(c) for c in built}
        assert pg_indexes.index_name("mid") in _walked(store, "mid")
        assert pg_indexes.GLOBAL + " " in _walked(store, "tiny")
        q = rng.standard_normal(8).tolist()
        for collection, allowed in (("mid", None), (None, ["mid"]), (None, ["big", "tiny"]), ("tiny", None)):
            # The second store searches exactly: every collection is under its exact_max.
            want = exact.vector_search(q, "m", 10, collection, {}, allowed)
            got = store.vector_search(q, "m", 10, collection, {}, allowed)
            assert got is not None and want is not None
            assert len(got) == (6 if collection == "tiny" else 10)
            assert [r for r, _ in got] == [r for r, _ in want]  # a small graph: the walk finds the exact top
            assert [s for _, s in got] == pytest.approx([s for _, s in want])
        assert store.vector_search(q, "m", 10, "mid", {}, ["big"]) == []  # the filter holds
        for i in range(sizes["odd name's"]):  # a collection emptied loses its index
            store.delete_document(f"odd name's-{i}")
        store.scope_indexer.run_once(wait=True)
        with store._pool.connection() as conn:
            assert set(pg_indexes.valid(conn)) == {pg_indexes.index_name(c) for c in ("big", "mid")}
    finally:
        store.close()
        exact.close()


def test_postgres_the_indexer_thread_builds_an_index_after_a_collection_grows(pg_url: str) -> None:
    from cairn_query.store import pg_indexes

    rng = np.random.default_rng(6)
    store = PostgresStore(pg_url, exact_max=20, scope_index_interval=0.1)
    try:
        small = [
            doc(f"s{i}", ["x"], rng.standard_normal((1, 1, 4)).tolist(), collection="s") for i in range(30)
        ]
        store.upsert_many([doc("a0", ["y"], rng.standard_normal((1, 1, 4)).tolist(), collection="a")])
        store.upsert_many(small[:10])  # "s": 10 vectors, under exact_max
        store.upsert_many(
            [
                doc(f"a{i}", ["y"], rng.standard_normal((1, 1, 4)).tolist(), collection="a")
                for i in range(1, 40)
            ]
        )
        store.upsert_many(small[10:])  # "s" grows to 30 of 70 vectors: the write pokes the thread
        name = pg_indexes.index_name("s")
        for _ in range(200):
            with store._pool.connection() as conn:
                if name in pg_indexes.valid(conn):
                    break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the index of collection s was not built")
    finally:
        store.close()


def test_postgres_a_store_from_before_the_collection_columns_is_upgraded_in_place(pg_url: str) -> None:
    """Migration 9 copies each document's collection onto its chunks and vectors and keeps the HNSW index."""
    import psycopg

    store = PostgresStore(pg_url)
    store.upsert_many(
        [doc("a", ["alpha text"], [[[1.0, 0.0]]], collection="x"), doc("b", ["alpha"], [[[0.0, 1.0]]])]
    )
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as schema 8 left it
        conn.execute("ALTER TABLE chunks DROP COLUMN collection")
        conn.execute("ALTER TABLE vectors DROP COLUMN collection")
        conn.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    store = PostgresStore(pg_url)
    try:
        with store._pool.connection() as conn:
            assert conn.execute("SELECT COUNT(*) FROM vectors WHERE collection = 'x'").fetchone() == (1,)
            assert conn.execute("SELECT to_regclass('vectors_hnsw') IS NOT NULL").fetchone() == (True,)
        x = store.get_chunk("a:0").rowid  # type: ignore[union-attr]
        assert store.bm25("alpha", 5, "x", {}) == [x]
        assert store.bm25("alpha", 5, None, {}, ["x"]) == [x]
        assert [r for r, _ in store.vector_search([0.0, 1.0], "m", 5, "x", {}) or []] == [x]
    finally:
        store.close()

"""PostgreSQL's two searches, each bounded so that its cost does not grow with what a query happens to match.

Keywords: the chunks matching the OR of the query's words (`query_terms`, the same words as on SQLite) are
ranked by `ts_rank` with the title at half weight. Ranking every matching row cost 32 ms a query at 100k chunks
(a five-word question matched ~14k rows), so only `fts_candidates` rows are ranked, taken in tiers through the
GIN index: the rows matching *all* the words (the best, few), then those matching at least two of them (for
questions of up to 8 words), then those matching any, until the cap is reached. A row holding more of the
question's words comes first (coordination, as classic search engines rank); within the candidates ts_rank
orders them. A broad query may so leave out a row that matches one word only, many times.

Vectors: an unscoped search walks the HNSW index for `_OVERFETCH` times `limit` nearest vectors and keeps each
chunk's best. pgvector 0.6 has no filtered index walk (0.8's iterative scans), so a search within some
collections (`nearest_in`: a caller's permission filter, a chosen collection) uses each large collection's own
index (pg_indexes.py) and searches what is left exactly when it is small (its rows only, by the `collection`
column: a few ms); when the collections hold half the vectors or more, or a large one has no index yet, it walks
the whole index far enough that `limit` chunks of theirs are among the vectors found. A scope over metadata
(`nearest_in_scope`) picks by its size: exact when it holds at most `exact_max` vectors, else the whole index
walked for `limit × _OVERFETCH / share` vectors (at most pgvector's 1,000) and filtered. Either walk runs the
exact search after all when it leaves fewer than half of `limit`, so a scope is never answered short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from cairn_query.store import pg_indexes

# ts_rank (term frequency, like BM25's tf) rather than ts_rank_cd (cover density): ts_rank costs half as much a
# row (16 vs 7.5 ms for 2,900 matching rows, docs/benchmarks.md).
RANK_WEIGHTS = "'{0, 0, 0.5, 1}'::float4[]"  # D, C, B (title), A (text)
# An unscoped search asks the index for this many vectors per chunk wanted: a chunk's sentences sit close
# together, so several of the nearest vectors are often one chunk's.
_OVERFETCH = 4
_EF_MAX = 1000  # pgvector's largest hnsw.ef_search
_PAIR_TERMS = 8  # up to this many words, the rows matching two of them are a tier of their own (28 pairs)


def bm25(
    conn: psycopg.Connection,
    terms: list[str],
    limit: int,
    candidates: int,
    collections: list[str] | None = None,
    scope: str = "",
    params: Sequence[Any] = (),
) -> list[int]:
    """Rowids of the best `limit` chunks for `terms` (\\w+ words: no quote or operator can be in one), within
    `collections` (None: all) and `scope` (a clause over document `d`, "" for none)."""
    tiers = [" & ".join(f"'{t}'" for t in terms)]  # every word
    if 2 < len(terms) <= _PAIR_TERMS:  # at least two of the words
        tiers.append(" | ".join(f"'{a}' & '{b}'" for i, a in enumerate(terms) for b in terms[i + 1 :]))
    if len(terms) > 1:
        tiers.append(" | ".join(f"'{t}'" for t in terms))  # any word
    # A LIMIT without ORDER BY stops the read (and the ranking, computed per row read) at the cap. With a
    # scope over documents, the match is fenced off (OFFSET 0) and sequential scans are off, so that it is
    # always read through the GIN index: left to itself, the planner walked the chunks testing each for the
    # match, hoping to fill the LIMIT early, and took seconds when few matched (or 184 ms at 100k chunks).
    match = "SELECT c.rowid, c.tsv, c.document_id FROM chunks c WHERE c.tsv @@ to_tsquery('cairn', %s)"
    if collections is not None:
        # The chunk's own collection (btree) and the match (GIN) meet in one bitmap, so only the scope's
        # matching rows are read: as fast as unscoped (10.8 vs 9.5 ms at 100k, 1/7), where joining each
        # match to its document took twice that (docs/benchmarks.md). One collection is bound as a value:
        # `= ANY(array)` costs the planner 1.8 ms more.
        match += " AND c.collection = %s" if len(collections) == 1 else " AND c.collection = ANY(%s)"
        params = [collections[0] if len(collections) == 1 else collections, *params]
    source = (
        f"({match} OFFSET 0) c JOIN documents d ON d.id = c.document_id WHERE {scope}"
        if scope
        else f"({match}) c"
    )
    pick = f"(SELECT c.rowid, ts_rank({RANK_WEIGHTS}, c.tsv, to_tsquery('cairn', %s), 1) AS r FROM {source} LIMIT %s)"
    rank_by = tiers[-1]
    # The outer LIMIT stops reading the tiers in order once it has `candidates` rows: the "any word" tier is
    # not read at all when the first two fill it (measured: 20 -> 10 ms a query at 100k chunks).
    with conn.transaction():
        if scope:
            conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute(
            f"SELECT rowid FROM (SELECT * FROM ({' UNION ALL '.join([pick] * len(tiers))}) t LIMIT %s) u"
            " GROUP BY rowid ORDER BY MAX(r) DESC, rowid LIMIT %s",
            [p for tier in tiers for p in (rank_by, tier, *params, candidates)] + [candidates, limit],
        ).fetchall()
    return [int(r[0]) for r in rows]


def nearest(conn: psycopg.Connection, q: np.ndarray, limit: int, ef_search: int) -> list[tuple[int, float]]:
    """The whole corpus's nearest chunks by the HNSW index, each scoring its best vector."""
    fetch = min(limit * _OVERFETCH, _EF_MAX)
    rows = _walk(conn, q, fetch, max(ef_search, fetch))
    return _best(rows, limit)


def nearest_in(
    conn: psycopg.Connection,
    q: np.ndarray,
    limit: int,
    ef_search: int,
    collections: list[str],
    exact_max: int,
) -> list[tuple[int, float]]:
    """The nearest chunks within `collections`: by each one's own index, exactly, or by the whole index."""
    indexes = pg_indexes.valid(conn)
    own = {c: indexes[pg_indexes.index_name(c)] for c in collections if pg_indexes.index_name(c) in indexes}
    rest = [c for c in collections if c not in own]
    counted = _count_upto(conn, rest, exact_max + 1)
    total = max(_vectors(conn), 1.0)
    share = min((sum(own.values()) + counted) / total, 1.0)
    if counted > exact_max or share >= 0.5:  # a large scope: the whole index finds it
        if counted > exact_max:  # `counted` stopped at the bound: the documents tell the share
            share, _ = _share(conn, "d.collection = ANY(%s)", [collections])
        return _walk_or_exact(conn, q, limit, ef_search, collections, share)
    rows: list[tuple[int, float]] = []
    for collection in own:
        rows += _walk_own(conn, q, limit * _OVERFETCH, ef_search, collection)
    if counted:
        rows += _exact_in(conn, q, limit, rest)
    return _best(sorted(rows, key=lambda r: r[1]), limit)


def nearest_in_scope(
    conn: psycopg.Connection,
    q: np.ndarray,
    limit: int,
    ef_search: int,
    scope: str,
    params: list[Any],
    exact_max: int,
) -> list[tuple[int, float]]:
    """The nearest chunks within a metadata scope: exact when it is small, else by the index and a filter."""
    share, vectors = _share(conn, scope, params)
    if share == 0:
        return []
    if share * vectors > exact_max:
        fetch = min(math.ceil(limit * _OVERFETCH / share), _EF_MAX)
        found = _best(_walk(conn, q, fetch, max(ef_search, fetch), scope, params), limit)
        if len(found) >= limit / 2:
            return found
    rows = conn.execute(
        "SELECT v.chunk_rowid, MIN(v.embedding <=> %b) AS dist FROM vectors v"
        " JOIN chunks c ON c.rowid = v.chunk_rowid JOIN documents d ON d.id = c.document_id"
        f" WHERE {scope} GROUP BY v.chunk_rowid ORDER BY dist, v.chunk_rowid LIMIT %s",
        [q, *params, limit],
    ).fetchall()
    return [(int(r), 1.0 - float(d)) for r, d in rows]


def _walk_or_exact(
    conn: psycopg.Connection, q: np.ndarray, limit: int, ef_search: int, collections: list[str], share: float
) -> list[tuple[int, float]]:
    """The whole index walked for enough vectors, kept when in `collections`; exact if that falls short."""
    if share > 0:
        fetch = min(math.ceil(limit * _OVERFETCH / share), _EF_MAX)
        found = _best(_walk(conn, q, fetch, max(ef_search, fetch), collections=collections), limit)
        if len(found) >= limit / 2:
            return found
    return _best(_exact_in(conn, q, limit, collections), limit)


def _walk_own(
    conn: psycopg.Connection, q: np.ndarray, fetch: int, ef: int, collection: str
) -> list[tuple[int, float]]:
    """The `fetch` nearest vectors of one collection by its own index. The collection is written into the
    statement, not bound: the planner picks a partial index only for a predicate it can match at plan time."""
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(ef, fetch)),))
        return conn.execute(
            sql.SQL(
                "SELECT chunk_rowid, embedding <=> %b AS dist FROM vectors WHERE collection = {}"
                " ORDER BY embedding <=> %b LIMIT %s"
            ).format(sql.Literal(collection)),
            (q, q, fetch),
        ).fetchall()


def _exact_in(
    conn: psycopg.Connection, q: np.ndarray, limit: int, collections: list[str]
) -> list[tuple[int, float]]:
    """Each chunk's nearest vector within `collections`, every vector compared (nearest first)."""
    return conn.execute(
        "SELECT chunk_rowid, MIN(embedding <=> %b) AS dist FROM vectors WHERE collection = ANY(%s)"
        " GROUP BY chunk_rowid ORDER BY dist, chunk_rowid LIMIT %s",
        (q, collections, limit),
    ).fetchall()


def _count_upto(conn: psycopg.Connection, collections: list[str], bound: int) -> int:
    """The vectors in `collections`, counted up to `bound` (the collection index, so it costs at most that)."""
    if not collections:
        return 0
    row = conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM vectors WHERE collection = ANY(%s) LIMIT %s) t",
        (collections, bound),
    ).fetchone()
    return int(row[0]) if row else 0


def _vectors(conn: psycopg.Connection) -> float:
    """The planner's count of vectors (no scan)."""
    row = conn.execute(
        "SELECT GREATEST(reltuples, 0) FROM pg_class WHERE oid = 'vectors'::regclass"
    ).fetchone()
    return float(row[0]) if row else 0.0


def _share(conn: psycopg.Connection, scope: str, params: list[Any]) -> tuple[float, float]:
    """The scope's share of the documents (documents are few beside vectors, so this is cheap), and the
    planner's count of vectors (no scan)."""
    row = conn.execute(
        f"SELECT COUNT(*) FILTER (WHERE {scope}), COUNT(*),"
        " (SELECT GREATEST(reltuples, 0) FROM pg_class WHERE oid = 'vectors'::regclass) FROM documents d",
        params,
    ).fetchone()
    assert row is not None
    scoped, total, vectors = row
    return (scoped / total if total else 0.0), float(vectors)


def _walk(
    conn: psycopg.Connection,
    q: np.ndarray,
    fetch: int,
    ef: int,
    scope: str = "",
    params: Sequence[Any] = (),
    collections: list[str] | None = None,
) -> list[tuple[int, float]]:
    """The `fetch` nearest vectors by the index (nearest first), kept when in `collections` (the vector's own
    column) and `scope` (a clause over its document `d`)."""
    with conn.transaction():
        # HNSW returns at most ef_search rows, so the candidate list is at least what is fetched.
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        near = (
            "SELECT chunk_rowid, collection, embedding <=> %b AS dist FROM vectors"
            " ORDER BY embedding <=> %b LIMIT %s"
        )
        if collections is not None:
            return conn.execute(
                f"SELECT chunk_rowid, dist FROM ({near}) n WHERE collection = ANY(%s) ORDER BY dist",
                (q, q, fetch, collections),
            ).fetchall()
        if not scope:
            return conn.execute(f"SELECT chunk_rowid, dist FROM ({near}) n", (q, q, fetch)).fetchall()
        return conn.execute(
            f"SELECT n.chunk_rowid, n.dist FROM ({near}) n JOIN chunks c ON c.rowid = n.chunk_rowid"
            f" JOIN documents d ON d.id = c.document_id WHERE {scope} ORDER BY n.dist",
            [q, q, fetch, *params],
        ).fetchall()


def _best(rows: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    best: dict[int, float] = {}
    for rowid, dist in rows:
        if rowid not in best:  # rows come nearest first, so a chunk's first row is its best
            best[int(rowid)] = 1.0 - float(dist)
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

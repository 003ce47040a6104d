"""The corpus store behind one protocol, and `open_store`, which picks the backend from the settings.

`QS_STORE_URL=postgresql://…` selects PostgreSQL with pgvector (postgres.py); a file path, or nothing (then
`QS_DB_PATH`), selects the embedded SQLite store (sqlite.py). psycopg is imported only when Postgres is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn_query.store.base import (
    LEGACY_OWNER,
    OPERATOR,
    STOPWORDS,
    ChunkRow,
    NewDocument,
    NotOwner,
    SchemaTooNew,
    Store,
    StoreError,
    StoreFull,
    fts_query,
    heading,
    may_write,
    query_terms,
)
from cairn_query.store.sqlite import SQLiteStore
from cairn_query.store.values import now_iso

if TYPE_CHECKING:
    from cairn_query.settings import QuerySettings
    from cairn_query.store.postgres import PostgresStore

__all__ = [
    "LEGACY_OWNER",
    "OPERATOR",
    "STOPWORDS",
    "ChunkRow",
    "NewDocument",
    "NotOwner",
    "PostgresStore",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreFull",
    "fts_query",
    "heading",
    "is_postgres_url",
    "may_write",
    "now_iso",
    "open_store",
    "query_terms",
]


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_store(settings: QuerySettings) -> Store:
    target = settings.store_url or settings.db_path
    if is_postgres_url(target):
        from cairn_query.store.postgres import PostgresStore

        return PostgresStore(
            target,
            pool_min=settings.store_pool_min,
            pool_max=settings.store_pool_max,
            ef_search=settings.store_ef_search,
            fts_candidates=settings.store_fts_candidates,
            exact_max=settings.store_exact_max_vectors,
        )
    return SQLiteStore(target.removeprefix("sqlite:///") if target.startswith("sqlite:///") else target)


def __getattr__(name: str) -> object:
    # PostgresStore on demand, so that importing the store does not import psycopg.
    if name == "PostgresStore":
        from cairn_query.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)

"""The statements' plumbing and the corpus meta (its version, schema version and embedding model), shared by
both backends' `SqlStore` (sql.py): statements are written with `?` placeholders, and PostgreSQL's store turns
them into `%s` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]


class SqlMeta:
    """The `meta` table and the placeholders; a dialect provides `_rows` (see sql.py)."""

    PLACEHOLDER = "?"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read, its rows as mappings by column name (`sql` already in the dialect's placeholders)."""
        raise NotImplementedError

    # --- statements -------------------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql if self.PLACEHOLDER == "?" else sql.replace("?", self.PLACEHOLDER)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._rows(self._sql(sql), params)

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self._sql(sql), params)

    # --- meta -------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query("SELECT key, value FROM meta")}

    def schema_version(self) -> int:
        return int(self.meta().get("schema_version", "0"))

    def version(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key='version'")[0]["value"])

    def embed_model(self) -> tuple[str | None, int | None]:
        meta = self.meta()
        dims = meta.get("embed_dims")
        return meta.get("embed_model"), int(dims) if dims else None

    def _bump(self, conn: Any) -> None:
        self._exec(
            conn, "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key='version'"
        )

    def _meta_embed(self, conn: Any) -> tuple[str | None, int | None]:
        rows = dict(
            self._exec(
                conn, "SELECT key, value FROM meta WHERE key IN ('embed_model','embed_dims')"
            ).fetchall()
        )
        return rows.get("embed_model"), int(rows["embed_dims"]) if "embed_dims" in rows else None

    def _set_meta(self, conn: Any, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._exec(
                conn,
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _set_embed_meta(self, conn: Any, model: str, dims: int) -> None:
        self._set_meta(conn, {"embed_model": model, "embed_dims": str(dims)})

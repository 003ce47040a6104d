"""Connector sources, what each last synced, and who runs it, on both store backends (docs/connectors.md).

- `connector_sources`: one row per configured source (name, kind, config as JSON, collection, schedule,
  enabled), with its last run's status (JSON) and the run lease: `lease_owner` holds it until
  `lease_until_ms`; a replica takes it with one conditional UPDATE, so of several QS replicas one runs a
  source, and a replica that died mid-run frees it when the lease runs out.
- `connector_items`: per source and item key (a relative path, a URL), the document it became, the
  connector's change token (`version`: stat stamp, blob id, ETag), the content hash of its bytes (what
  renames are matched on) and the connector's own state (a page's ETag and links).

Same shape as `SqlConversations`: plain DB-API calls that SQLite and psycopg share; the store passes a write
transaction, a read connection and its placeholder. The types below mean the same in both dialects.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cairn_query.store.values import now_iso, to_json

CONNECTORS_SCHEMA = """
CREATE TABLE IF NOT EXISTS connector_sources (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    collection TEXT NOT NULL,
    interval_s DOUBLE PRECISION NOT NULL,
    enabled INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS connector_items (
    source TEXT NOT NULL REFERENCES connector_sources (name) ON DELETE CASCADE,
    key TEXT NOT NULL,
    document_id TEXT NOT NULL,
    version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '{}',
    synced_at TEXT NOT NULL,
    PRIMARY KEY (source, key)
)
"""

_SOURCE_COLUMNS = "name, kind, config, collection, interval_s, enabled, status, created_at, updated_at"


@dataclass
class SourceRow:
    name: str
    kind: str
    config: dict[str, Any]
    collection: str
    interval_s: float
    enabled: bool
    status: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass
class ItemRow:
    """What the store holds for one item of a source; `present` is False when its document was deleted
    behind the connector's back (through the API), so the next run stores it again."""

    key: str
    document_id: str
    version: str
    content_hash: str
    kind: str
    state: dict[str, Any]
    present: bool = True


def _source(row: Any) -> SourceRow:
    return SourceRow(
        name=row[0],
        kind=row[1],
        config=json.loads(row[2]),
        collection=row[3],
        interval_s=float(row[4]),
        enabled=bool(row[5]),
        status=json.loads(row[6]),
        created_at=row[7],
        updated_at=row[8],
    )


def _ms() -> int:
    return int(time.time() * 1000)


class SqlConnectors:
    def __init__(self, write: Any, read: Any, placeholder: str = "?") -> None:
        self._write = write
        self._read = read
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    # --- sources --------------------------------------------------------------------------------------------

    def create(self, source: SourceRow) -> bool:
        """Store a new source; False when the name is taken (nothing changed)."""
        now = now_iso()
        with self._write() as conn:
            cur = conn.execute(
                self._sql(
                    f"INSERT INTO connector_sources ({_SOURCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (name) DO NOTHING"
                ),
                (
                    source.name,
                    source.kind,
                    to_json(source.config),
                    source.collection,
                    source.interval_s,
                    int(source.enabled),
                    "{}",
                    now,
                    now,
                ),
            )
            return bool(cur.rowcount)

    def update(self, source: SourceRow) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                self._sql(
                    "UPDATE connector_sources SET kind = ?, config = ?, collection = ?, interval_s = ?,"
                    " enabled = ?, updated_at = ? WHERE name = ?"
                ),
                (
                    source.kind,
                    to_json(source.config),
                    source.collection,
                    source.interval_s,
                    int(source.enabled),
                    now_iso(),
                    source.name,
                ),
            )
            return bool(cur.rowcount)

    def get(self, name: str) -> SourceRow | None:
        with self._read() as conn:
            row = conn.execute(
                self._sql(f"SELECT {_SOURCE_COLUMNS} FROM connector_sources WHERE name = ?"), (name,)
            ).fetchone()
        return _source(row) if row is not None else None

    def all(self) -> list[SourceRow]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_SOURCE_COLUMNS} FROM connector_sources ORDER BY name").fetchall()
        return [_source(r) for r in rows]

    def delete(self, name: str) -> bool:
        with self._write() as conn:
            conn.execute(self._sql("DELETE FROM connector_items WHERE source = ?"), (name,))
            cur = conn.execute(self._sql("DELETE FROM connector_sources WHERE name = ?"), (name,))
            return bool(cur.rowcount)

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                self._sql("UPDATE connector_sources SET status = ? WHERE name = ?"), (to_json(status), name)
            )

    # --- the run lease --------------------------------------------------------------------------------------

    def take_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Hold `name`'s run lease for `ttl_s` (taken, or renewed when `holder` has it); False while another
        holder's lease is alive. One conditional UPDATE: two replicas cannot both win it."""
        now = _ms()
        with self._write() as conn:
            cur = conn.execute(
                self._sql(
                    "UPDATE connector_sources SET lease_owner = ?, lease_until_ms = ?"
                    " WHERE name = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until_ms < ?)"
                ),
                (holder, now + int(ttl_s * 1000), name, holder, now),
            )
            return bool(cur.rowcount)

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute(
                self._sql(
                    "UPDATE connector_sources SET lease_owner = NULL, lease_until_ms = 0"
                    " WHERE name = ? AND lease_owner = ?"
                ),
                (name, holder),
            )

    def lease_holder(self, name: str) -> str | None:
        """Who runs `name` now (a live lease), None when nobody does."""
        with self._read() as conn:
            row = conn.execute(
                self._sql("SELECT lease_owner FROM connector_sources WHERE name = ? AND lease_until_ms >= ?"),
                (name, _ms()),
            ).fetchone()
        return row[0] if row is not None else None

    # --- items ----------------------------------------------------------------------------------------------

    def items(self, source: str) -> dict[str, ItemRow]:
        with self._read() as conn:
            rows = conn.execute(
                self._sql(
                    "SELECT i.key, i.document_id, i.version, i.content_hash, i.kind, i.state,"
                    " (SELECT COUNT(*) FROM documents d WHERE d.id = i.document_id)"
                    " FROM connector_items i WHERE i.source = ?"
                ),
                (source,),
            ).fetchall()
        return {
            r[0]: ItemRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), present=bool(r[6])) for r in rows
        }

    def document_ids(self, source: str) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                self._sql("SELECT document_id FROM connector_items WHERE source = ?"), (source,)
            ).fetchall()
        return [r[0] for r in rows]

    def put_item(self, source: str, item: ItemRow) -> None:
        with self._write() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO connector_items (source, key, document_id, version, content_hash, kind, state,"
                    " synced_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (source, key) DO UPDATE SET"
                    " document_id = excluded.document_id, version = excluded.version,"
                    " content_hash = excluded.content_hash, kind = excluded.kind, state = excluded.state,"
                    " synced_at = excluded.synced_at"
                ),
                (
                    source,
                    item.key,
                    item.document_id,
                    item.version,
                    item.content_hash,
                    item.kind,
                    to_json(item.state),
                    now_iso(),
                ),
            )

    def drop_item(self, source: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(self._sql("DELETE FROM connector_items WHERE source = ? AND key = ?"), (source, key))

"""The audit log's hash chain and the table protocol both store backends implement (docs/governance.md).

One row per answer (kind `answer`), per retention run (kind `retention`), per login, permission change or API
key change (kinds `login`, `permissions`, `key`: http/identity.py). A row's `body` is the canonical
JSON of what it records, and `hash = sha256(prev_hash + body)`, where `prev_hash` is the previous row's hash:
changing, inserting or removing a row breaks every link after it. Two values in the store's meta table close
the ends of the chain: `audit_anchor` (the hash of the last row that retention removed; genesis before any)
and `audit_head` (the hash of the newest row), so removing rows from either end is caught too.

A chain without a secret detects edits, not a forger who rewrites every later row and both ends; `verify`
returns the head hash so an operator can keep it elsewhere (a ticket, a log shipper) and compare later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

GENESIS = "0" * 64


def canonical(body: dict[str, Any]) -> str:
    """The exact text that is hashed and stored: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def link_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass
class AuditRow:
    id: int
    at: str
    kind: str
    outcome: str
    reason_code: str | None
    body: str
    prev_hash: str
    hash: str

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, **json.loads(self.body)}


@dataclass
class AuditQuery:
    """Filters of `GET /admin/audit`; times are ISO-8601 UTC strings, compared as text (they sort so)."""

    since: str | None = None
    until: str | None = None
    outcome: str | None = None
    reason_code: str | None = None
    q: str | None = None  # in the question or the answer, case-insensitive
    request_id: str | None = None
    limit: int = 50
    after_id: int | None = None  # pages go from newest to oldest: the next page starts below this id
    # Answers by default; `login`, `permissions`, `key` or `retention` records (identity), or "all".
    kind: str = "answer"


@dataclass
class ChainReport:
    ok: bool
    records: int = 0
    head: str = GENESIS
    anchor: str = GENESIS
    first_bad_id: int | None = None
    problem: str | None = None
    checked_ids: list[int] = field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head": self.head,
            "anchor": self.anchor,
            "first_bad_id": self.first_bad_id,
            "problem": self.problem,
        }


def verify_chain(rows: Iterable[AuditRow], anchor: str, head: str) -> ChainReport:
    """Walk the rows in id order from the anchor; the first broken link, or a head that is not the last row's
    hash (rows removed from the end), makes the report not ok."""
    expected = anchor
    count = 0
    for row in rows:
        count += 1
        if row.prev_hash != expected:
            return ChainReport(
                False, count, head, anchor, row.id, "a record before this one was removed or replaced"
            )
        if link_hash(row.prev_hash, row.body) != row.hash:
            return ChainReport(
                False, count, head, anchor, row.id, "this record was changed after it was written"
            )
        columns = json.loads(row.body)
        if (row.at, row.kind, row.outcome, row.reason_code) != (
            columns.get("at"),
            columns.get("kind"),
            columns.get("outcome"),
            columns.get("reason_code"),
        ):
            return ChainReport(
                False, count, head, anchor, row.id, "this record's columns differ from its body"
            )
        expected = row.hash
    if expected != head:
        return ChainReport(False, count, head, anchor, None, "records after the last one were removed")
    return ChainReport(True, count, head, anchor)


class AuditTable(Protocol):
    """The audit rows of one store. Blocking, like the store; run in a worker thread by the caller."""

    def append(self, body: dict[str, Any]) -> AuditRow:
        """Chain `body` (which holds `at`, `kind`, `outcome`, `reason_code`) after the head, in one transaction
        that also moves the head, serialised against every other writer of the store."""
        ...

    def find(self, query: AuditQuery) -> list[AuditRow]: ...

    def chain(self) -> tuple[Iterable[AuditRow], str, str]:
        """Every row in id order, with the anchor and the head."""
        ...

    def purge_before(self, cutoff: str, retention_body: dict[str, Any]) -> int:
        """Remove the rows written before `cutoff`, move the anchor to the last one removed and append
        `retention_body` (with `removed` filled in) to the chain, in one transaction; returns how many."""
        ...

    def count(self) -> int: ...


# The table, the same on both backends (BIGINT and TEXT mean the same to SQLite). `body` is TEXT, not JSONB:
# the hash covers its exact bytes, which JSONB would re-order. The columns beside it are copies for filtering;
# `verify_chain` checks that they still agree with the body.
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id {id_type} PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason_code TEXT,
    request_id TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_request ON audit (request_id)
"""
_COLUMNS = "id, at, kind, outcome, reason_code, body, prev_hash, hash"
_BATCH = 1000


class SqlAuditTable:
    """`AuditTable` over a DB-API connection: SQLite and psycopg differ only in the placeholder and in how a
    write transaction is opened, which the store passes in (`write` must serialise appends across processes:
    SQLite's BEGIN IMMEDIATE, a row lock on PostgreSQL)."""

    def __init__(self, write: Any, read: Any, placeholder: str = "?") -> None:
        self._write = write  # () -> context manager yielding a connection inside a write transaction
        self._read = read  # () -> context manager yielding a connection for reads
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    def _meta(self, conn: Any, key: str) -> str:
        row = conn.execute(self._sql("SELECT value FROM meta WHERE key=?"), (key,)).fetchone()
        return str(row[0]) if row else GENESIS

    def _set_meta(self, conn: Any, key: str, value: str) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            (key, value),
        )

    def _insert(self, conn: Any, body: dict[str, Any]) -> AuditRow:
        prev = self._meta(conn, "audit_head")
        text = canonical(body)
        digest = link_hash(prev, text)
        row = conn.execute(
            self._sql(
                "INSERT INTO audit (at, kind, outcome, reason_code, request_id, body, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
            ),
            (
                body["at"],
                body["kind"],
                body["outcome"],
                body.get("reason_code"),
                body.get("request_id"),
                text,
                prev,
                digest,
            ),
        ).fetchone()
        self._set_meta(conn, "audit_head", digest)
        return AuditRow(
            int(row[0]),
            body["at"],
            body["kind"],
            body["outcome"],
            body.get("reason_code"),
            text,
            prev,
            digest,
        )

    def append(self, body: dict[str, Any]) -> AuditRow:
        with self._write() as conn:
            return self._insert(conn, body)

    def find(self, query: AuditQuery) -> list[AuditRow]:
        where, params = [], []
        for column, op, value in (
            ("kind", "=", None if query.kind == "all" else query.kind),
            ("at", ">=", query.since),
            ("at", "<", query.until),
            ("outcome", "=", query.outcome),
            ("reason_code", "=", query.reason_code),
            ("request_id", "=", query.request_id),
            ("id", "<", query.after_id),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if query.q:
            where.append("LOWER(body) LIKE ?")
            params.append("%" + query.q.lower().replace("\\", "").replace("%", "").replace("_", "") + "%")
        sql = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where) or 'TRUE'} ORDER BY id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(self._sql(sql), (*params, query.limit)).fetchall()
        return [AuditRow(*r) for r in rows]

    def chain(self) -> tuple[Iterable[AuditRow], str, str]:
        with self._read() as conn:
            anchor, head = self._meta(conn, "audit_anchor"), self._meta(conn, "audit_head")

        def rows() -> Iterable[AuditRow]:
            last = -1
            while True:
                with self._read() as conn:
                    batch = conn.execute(
                        self._sql(f"SELECT {_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?"),
                        (last, _BATCH),
                    ).fetchall()
                yield from (AuditRow(*r) for r in batch)
                if len(batch) < _BATCH:
                    return
                last = batch[-1][0]

        return rows(), anchor, head

    def purge_before(self, cutoff: str, retention_body: dict[str, Any]) -> int:
        with self._write() as conn:
            last = conn.execute(
                self._sql("SELECT id, hash FROM audit WHERE at < ? ORDER BY id DESC LIMIT 1"), (cutoff,)
            ).fetchone()
            if last is None:
                return 0
            # Everything up to the newest expired row goes, so the chain stays one piece from the anchor on.
            removed = conn.execute(self._sql("DELETE FROM audit WHERE id <= ?"), (last[0],)).rowcount
            self._set_meta(conn, "audit_anchor", last[1])
            self._insert(conn, {**retention_body, "removed": removed, "anchor": last[1]})
            return int(removed)

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM audit WHERE kind = 'answer'").fetchone()[0])

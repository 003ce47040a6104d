"""Who may read and write each collection, and the API keys that name users, on both store backends
(docs/operations.md, "Users, groups and permissions").

A permission is one row: a collection, a principal and a role. A principal is `user:<id>`, `group:<name>`
or `*` (everyone who signed in); a role is `owner`, `writer` or `reader`, each including the ones after it.
A collection without rows is readable by admins only (and by the operator, who calls QS directly): nothing
is shared until someone says so. `readable` is what every read of the corpus is filtered by
(governance/access.py computes it once per request and the store applies it inside its queries).

API keys are stored as the SHA-256 of the key, never the key: a key is 32 random bytes, so a fast hash is as
strong as a slow one and one indexed lookup finds it. Every BFF replica resolves keys here, so a key made or
revoked on one replica holds on all of them.
"""

from __future__ import annotations

import json
from typing import Any

from cairn_query.store.values import now_iso

ROLES = ("owner", "writer", "reader")
EVERYONE = "*"

PERMISSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS collection_permissions (
    collection TEXT NOT NULL,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (collection, principal, role)
);
CREATE INDEX IF NOT EXISTS collection_permissions_principal ON collection_permissions (principal, collection);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    user_groups TEXT NOT NULL DEFAULT '[]',
    admin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT
)
"""


def _key(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "user": row[1],
        "name": row[2],
        "groups": json.loads(row[3]),
        "admin": bool(row[4]),
        "created_at": row[5],
        "created_by": row[6],
    }


class SqlPermissions:
    """Like `SqlConversations`: DB-API calls that SQLite and psycopg share. `write` is the store's corpus write
    transaction, so two first uploads into one new collection cannot both claim it."""

    def __init__(self, write: Any, read: Any, placeholder: str = "?") -> None:
        self._write = write
        self._read = read
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    def _marks(self, n: int) -> str:
        return ",".join([self._ph] * n)

    # --- collections ------------------------------------------------------------------------------------

    def readable(self, principals: list[str]) -> list[str]:
        """The collections any of `principals` may read, sorted."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT collection FROM collection_permissions"
                f" WHERE principal IN ({self._marks(len(principals))}) ORDER BY collection",
                principals,
            ).fetchall()
        return [r[0] for r in rows]

    def roles_of(self, principals: list[str], collection: str) -> set[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT role FROM collection_permissions"
                f" WHERE collection = {self._ph} AND principal IN ({self._marks(len(principals))})",
                [collection, *principals],
            ).fetchall()
        return {r[0] for r in rows}

    def get(self, collection: str) -> dict[str, Any]:
        with self._read() as conn:
            rows = conn.execute(
                self._sql(
                    "SELECT principal, role FROM collection_permissions WHERE collection = ? ORDER BY principal"
                ),
                (collection,),
            ).fetchall()
        return _permissions(collection, rows)

    def replace(
        self, collection: str, owner: str | None, writers: list[str], readers: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Set a collection's permissions whole; returns (before, after) for the audit record."""
        wanted = [(owner, "owner")] if owner else []
        wanted += [(p, "writer") for p in writers] + [(p, "reader") for p in readers]
        with self._write() as conn:
            before = conn.execute(
                self._sql("SELECT principal, role FROM collection_permissions WHERE collection = ?"),
                (collection,),
            ).fetchall()
            conn.execute(self._sql("DELETE FROM collection_permissions WHERE collection = ?"), (collection,))
            for principal, role in dict.fromkeys(wanted):
                conn.execute(
                    self._sql(
                        "INSERT INTO collection_permissions (collection, principal, role) VALUES (?,?,?)"
                    ),
                    (collection, principal, role),
                )
        after = [(p, r) for p, r in dict.fromkeys(wanted)]
        return _permissions(collection, before), _permissions(collection, after)

    def claim(self, collection: str, owner: str) -> bool:
        """Make `owner` the owner of a collection nobody has permissions on yet; False if somebody has."""
        with self._write() as conn:
            taken = conn.execute(
                self._sql("SELECT 1 FROM collection_permissions WHERE collection = ? LIMIT 1"), (collection,)
            ).fetchone()
            if taken is not None:
                return False
            conn.execute(
                self._sql("INSERT INTO collection_permissions (collection, principal, role) VALUES (?,?,?)"),
                (collection, owner, "owner"),
            )
            return True

    # --- API keys ---------------------------------------------------------------------------------------

    _KEY_COLUMNS = "id, user_id, name, user_groups, admin, created_at, created_by"

    def add_key(
        self,
        key_id: str,
        key_hash: str,
        user: str,
        name: str,
        groups: list[str],
        admin: bool,
        created_by: str | None,
    ) -> dict[str, Any]:
        with self._write() as conn:
            row = conn.execute(
                self._sql(
                    "INSERT INTO api_keys (id, key_hash, user_id, name, user_groups, admin, created_at,"
                    f" created_by) VALUES (?,?,?,?,?,?,?,?) RETURNING {self._KEY_COLUMNS}"
                ),
                (key_id, key_hash, user, name, json.dumps(groups), int(admin), now_iso(), created_by),
            ).fetchone()
        return _key(row)

    def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                self._sql(f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"), (key_hash,)
            ).fetchone()
        return _key(row) if row else None

    def api_keys(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [_key(r) for r in rows]

    def delete_key(self, key_id: str) -> dict[str, Any] | None:
        with self._write() as conn:
            row = conn.execute(
                self._sql(f"DELETE FROM api_keys WHERE id = ? RETURNING {self._KEY_COLUMNS}"), (key_id,)
            ).fetchone()
        return _key(row) if row else None


def _permissions(collection: str, rows: Any) -> dict[str, Any]:
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    for principal, role in rows:
        by_role.setdefault(role, []).append(principal)
    owners = sorted(by_role["owner"])
    return {
        "collection": collection,
        "owner": owners[0] if owners else None,
        "writers": sorted(by_role["writer"]),
        "readers": sorted(by_role["reader"]),
    }

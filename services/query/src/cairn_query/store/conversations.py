"""Conversations, their messages, and ratings of answers, on both store backends (docs/query-service.md).

A conversation belongs to one owner (the BFF's `key:<fingerprint>` or `session:<…>`, or the operator); every
call names the owner, and another owner's conversation reads as missing. Messages keep their order by id; an
assistant message carries what the page needs to draw it again (`meta`: status, reason code, citations,
warnings, the request id its rating hangs on). Ratings are stored by the answer's request id, one per answer
(a second rating replaces the first).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from cairn_query.store.values import now_iso, to_json

CONVERSATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (owner, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id {id_type} PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    request_id TEXT,
    meta TEXT NOT NULL DEFAULT '{{}}',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id, id);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    rating TEXT NOT NULL,
    comment TEXT,
    at TEXT NOT NULL
)
"""


def _conversation(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "title": row[1],
        "created_at": row[2],
        "updated_at": row[3],
        "messages": int(row[4]),
    }


class SqlConversations:
    """Like `SqlAuditTable`: DB-API calls that SQLite and psycopg share; the store passes a write transaction,
    a read connection and its placeholder."""

    def __init__(self, write: Any, read: Any, placeholder: str = "?") -> None:
        self._write = write
        self._read = read
        self._ph = placeholder

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    _SELECT = (
        "SELECT c.id, c.title, c.created_at, c.updated_at,"
        " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) FROM conversations c"
    )

    def create(self, owner: str, title: str) -> dict[str, Any]:
        conv_id, now = secrets.token_hex(8), now_iso()
        with self._write() as conn:
            # RETURNING: the title as stored (base.scrub), not as given.
            row = conn.execute(
                self._sql(
                    "INSERT INTO conversations (id, owner, title, created_at, updated_at) VALUES (?,?,?,?,?)"
                    " RETURNING id, title, created_at, updated_at, 0"
                ),
                (conv_id, owner, title, now, now),
            ).fetchone()
        return _conversation(row)

    def of_owner(self, owner: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._read() as conn:
            rows = conn.execute(
                self._sql(
                    f"{self._SELECT} WHERE c.owner = ? ORDER BY c.updated_at DESC, c.id LIMIT ? OFFSET ?"
                ),
                (owner, limit, offset),
            ).fetchall()
            total = conn.execute(
                self._sql("SELECT COUNT(*) FROM conversations WHERE owner = ?"), (owner,)
            ).fetchone()
        return [_conversation(r) for r in rows], int(total[0])

    def get(self, owner: str, conv_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                self._sql(f"{self._SELECT} WHERE c.id = ? AND c.owner = ?"), (conv_id, owner)
            ).fetchone()
            if row is None:
                return None
            messages = conn.execute(
                self._sql(
                    "SELECT m.id, m.role, m.content, m.request_id, m.meta, m.created_at, f.rating, f.comment"
                    " FROM messages m LEFT JOIN feedback f ON f.request_id = m.request_id"
                    " WHERE m.conversation_id = ? ORDER BY m.id"
                ),
                (conv_id,),
            ).fetchall()
        out = _conversation(row)
        out["messages"] = [
            {
                "id": int(m[0]),
                "role": m[1],
                "content": m[2],
                "request_id": m[3],
                **json.loads(m[4]),
                "created_at": m[5],
                "rating": m[6],
                "comment": m[7],
            }
            for m in messages
        ]
        return out

    def rename(self, owner: str, conv_id: str, title: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                self._sql("UPDATE conversations SET title = ?, updated_at = ? WHERE id = ? AND owner = ?"),
                (title, now_iso(), conv_id, owner),
            )
            return bool(cur.rowcount)

    def delete(self, owner: str, conv_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                self._sql("DELETE FROM conversations WHERE id = ? AND owner = ?"), (conv_id, owner)
            )
            return bool(cur.rowcount)

    def add_message(
        self,
        owner: str,
        conv_id: str,
        role: str,
        content: str,
        request_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Append a message; False when the conversation is not this owner's (or was deleted meanwhile)."""
        now = now_iso()
        with self._write() as conn:
            cur = conn.execute(
                self._sql("UPDATE conversations SET updated_at = ? WHERE id = ? AND owner = ?"),
                (now, conv_id, owner),
            )
            if not cur.rowcount:
                return False
            conn.execute(
                self._sql(
                    "INSERT INTO messages (conversation_id, role, content, request_id, meta, created_at)"
                    " VALUES (?,?,?,?,?,?)"
                ),
                (conv_id, role, content, request_id, to_json(meta or {}), now),
            )
            return True

    def drop_last_answer(self, owner: str, conv_id: str) -> None:
        """Regenerate: the last message goes when it is the assistant's, so the question is asked again."""
        with self._write() as conn:
            row = conn.execute(
                self._sql(
                    "SELECT m.id, m.role FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE c.id = ? AND c.owner = ? ORDER BY m.id DESC LIMIT 1"
                ),
                (conv_id, owner),
            ).fetchone()
            if row is not None and row[1] == "assistant":
                conn.execute(self._sql("DELETE FROM messages WHERE id = ?"), (row[0],))

    def owner_of_answer(self, request_id: str) -> str | None:
        """The owner of the conversation that keeps the answer with this request id, None if none does."""
        with self._read() as conn:
            row = conn.execute(
                self._sql(
                    "SELECT c.owner FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " WHERE m.request_id = ? AND m.role = 'assistant' LIMIT 1"
                ),
                (request_id,),
            ).fetchone()
        return str(row[0]) if row else None

    def rate(self, request_id: str, owner: str, rating: str, comment: str | None) -> dict[str, Any]:
        at = now_iso()
        with self._write() as conn:
            row = conn.execute(
                self._sql(
                    "INSERT INTO feedback (request_id, owner, rating, comment, at) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (request_id) DO UPDATE SET owner = excluded.owner, rating = excluded.rating,"
                    " comment = excluded.comment, at = excluded.at RETURNING comment"
                ),
                (request_id, owner, rating, comment, at),
            ).fetchone()
        return {"request_id": request_id, "rating": rating, "comment": row[0], "at": at}

    def feedback(
        self, rating: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The newest ratings (filtered by `rating`), and the count of each rating."""
        where, params = ("WHERE rating = ?", [rating]) if rating else ("", [])
        with self._read() as conn:
            rows = conn.execute(
                self._sql(
                    "SELECT request_id, owner, rating, comment, at FROM feedback"
                    f" {where} ORDER BY at DESC, request_id LIMIT ? OFFSET ?"
                ),
                (*params, limit, offset),
            ).fetchall()
            counts = conn.execute("SELECT rating, COUNT(*) FROM feedback GROUP BY rating").fetchall()
        keys = ("request_id", "key_id", "rating", "comment", "at")
        return [dict(zip(keys, r, strict=True)) for r in rows], {r[0]: int(r[1]) for r in counts}

    def ratings(self, request_ids: list[str]) -> dict[str, dict[str, Any]]:
        marks = ",".join("?" * len(request_ids))
        with self._read() as conn:
            rows = conn.execute(
                self._sql(
                    f"SELECT request_id, rating, comment, at FROM feedback WHERE request_id IN ({marks})"
                ),
                request_ids,
            ).fetchall()
        return {r[0]: {"rating": r[1], "comment": r[2], "at": r[3]} for r in rows}

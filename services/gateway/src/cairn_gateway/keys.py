"""Who may call the gateway: the internal token, a master key, and virtual keys, the way LiteLLM's proxy works.

- `CAIRN_INTERNAL_TOKEN` (X-Cairn-Internal-Token, or as a bearer key) is what QS and the BFF send.
- `LLM_MASTER_KEY` is the operator's key: it is accepted everywhere and is the only one that can create,
  list and revoke virtual keys (`POST /key/generate`, `GET /key/list`, `POST /key/delete`).
- A virtual key (`sk-cairn-…`) is handed to one person or app and revoked alone. Only its SHA-256 digest is
  stored (LLM_KEYS_PATH, SQLite), so the file does not leak usable keys; the key is shown once, at creation.

With neither the internal token nor a master key set the gateway is open, which `__main__` allows only on
loopback (cairn_core `require_token_off_loopback`).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from cairn_core import INTERNAL_TOKEN_HEADER, secret_of, token_matches
from pydantic import SecretStr
from starlette.datastructures import Headers

KEY_PREFIX = "sk-cairn-"


def bearer_of(headers: Headers) -> str:
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The gateway's credentials. Digests of live virtual keys are held in memory for the per-request check
    (one process owns the file); every change is written through to SQLite first."""

    def __init__(self, internal: SecretStr | None, master: SecretStr | None, path: str) -> None:
        self.internal = secret_of(internal)
        self.master = secret_of(master)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._live: set[str] = set()
        if self.master:  # without a master key no virtual key can exist, so no file is needed
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS keys (digest TEXT PRIMARY KEY, key_id TEXT UNIQUE NOT NULL, "
                "alias TEXT, created_at REAL NOT NULL)"
            )
            self._live = {row[0] for row in self._db.execute("SELECT digest FROM keys")}

    @property
    def enforced(self) -> bool:
        return bool(self.internal or self.master)

    def admits(self, headers: Headers) -> bool:
        """Any of: the internal token in its header or as a bearer key, the master key, a live virtual key."""
        given = bearer_of(headers)
        if token_matches(headers.get(INTERNAL_TOKEN_HEADER.lower(), ""), self.internal):
            return True
        if not given:
            return False
        if token_matches(given, self.internal) or token_matches(given, self.master):
            return True
        # A set lookup on the digest: timing reveals nothing about the key itself.
        return given.startswith(KEY_PREFIX) and _digest(given) in self._live

    def is_master(self, headers: Headers) -> bool:
        return token_matches(bearer_of(headers), self.master)

    def generate(self, alias: str | None) -> dict[str, Any]:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(key)
        key_id = digest[:16]
        created = time.time()
        with self._lock:
            assert self._db is not None
            self._db.execute(
                "INSERT INTO keys (digest, key_id, alias, created_at) VALUES (?, ?, ?, ?)",
                (digest, key_id, alias, created),
            )
            self._live.add(digest)
        return {"key": key, "key_id": key_id, "key_alias": alias, "created_at": created}

    def listed(self) -> list[dict[str, Any]]:
        assert self._db is not None
        rows = self._db.execute("SELECT key_id, alias, created_at FROM keys ORDER BY created_at").fetchall()
        return [{"key_id": k, "key_alias": a, "created_at": c} for k, a, c in rows]

    def delete(self, keys: list[str]) -> list[str]:
        """Revoke by key id or by the key itself; returns the ids that were revoked."""
        wanted = {k if not k.startswith(KEY_PREFIX) else _digest(k)[:16] for k in keys}
        with self._lock:
            assert self._db is not None
            rows = self._db.execute("SELECT digest, key_id FROM keys").fetchall()
            gone = [(d, k) for d, k in rows if k in wanted]
            for digest, _ in gone:
                self._db.execute("DELETE FROM keys WHERE digest = ?", (digest,))
                self._live.discard(digest)
        return [k for _, k in gone]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

"""Who may call the gateway: the internal token, a master key, and virtual keys, the way LiteLLM's proxy works.

- `CAIRN_INTERNAL_TOKEN` (X-Cairn-Internal-Token, or as a bearer key) is what QS and the BFF send.
- `LLM_MASTER_KEY` is the operator's key: it is accepted everywhere and is the only one that can create,
  list and revoke virtual keys (`POST /key/generate`, `GET /key/list`, `POST /key/delete`).
- A virtual key (`sk-cairn-…`) is handed to one person or app and revoked alone. Only its SHA-256 digest is
  stored (LLM_KEYS_PATH, SQLite), so the file does not leak usable keys; the key is shown once, at creation.

Several gateways must agree on which keys are live, or a key revoked through one keeps working through the
others. Each replica checks a request against the live digests it holds in memory (a set lookup, no I/O on
the request's path) and refreshes them every LLM_KEYS_REFRESH_S (`keep_fresh`):
- with CAIRN_REDIS_URL, from the hash `cairn:gateway:keys` that every replica writes its changes to; the
  file stays this replica's durable copy, copied into Redis at start (`share`) except for keys revoked since;
- without it, from the file when another process has written to it (SQLite's `data_version`), which is how
  replicas on one box sharing LLM_KEYS_PATH see each other's changes.
A change is in force at once on the replica that made it, and within LLM_KEYS_REFRESH_S on every other.

With neither the internal token nor a master key set the gateway is open, which `__main__` allows only on
loopback (cairn_core `require_token_off_loopback`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import structlog
from cairn_core import (
    INTERNAL_TOKEN_HEADER,
    KEY_PREFIX,
    KEYS_IMPORT_LUA,
    CairnError,
    ReasonCode,
    Redis,
    RedisError,
    RedisOutageLog,
    json_dumps,
    json_loads,
    secret_of,
    token_matches,
)
from pydantic import SecretStr
from starlette.datastructures import Headers

log = structlog.get_logger("keys")

VIRTUAL_KEY_PREFIX = "sk-cairn-"
LIVE_KEYS = f"{KEY_PREFIX}gateway:keys"  # hash: digest -> {"key_id", "key_alias", "created_at"}
# Digests revoked through any replica, kept for good (64 bytes each): they stop a replica's file from bringing
# a revoked key back when it is copied in at start.
REVOKED_KEYS = f"{LIVE_KEYS}:revoked"


def bearer_of(headers: Headers) -> str:
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _live_in(redis: Redis) -> set[str]:
    return {_text(d) for d in await redis.hkeys(LIVE_KEYS)}


def _redis_down(exc: RedisError, what: str) -> CairnError:
    # Refused rather than done on this replica alone: a revocation the others never hear of is the bug itself.
    return CairnError(
        ReasonCode.INTERNAL_ERROR,
        f"Redis (CAIRN_REDIS_URL) does not answer, so keys cannot be {what} across the gateways now: {exc}",
    )


class KeyStore:
    """The gateway's credentials: the live digests in memory, every change written through to the file (and
    to Redis once `share` was called) before it is acknowledged."""

    def __init__(self, internal: SecretStr | None, master: SecretStr | None, path: str) -> None:
        self.internal = secret_of(internal)
        self.master = secret_of(master)
        self._db: sqlite3.Connection | None = None
        self._live: set[str] = set()
        self._redis: Redis | None = None
        self._file_version = -1
        self._changes = 0  # keys made or revoked through this replica: a Redis read older than one is stale
        self._warn = RedisOutageLog("virtual keys")
        if self.master:  # without a master key no virtual key can exist, so no file is needed
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS keys (digest TEXT PRIMARY KEY, key_id TEXT UNIQUE NOT NULL, "
                "alias TEXT, created_at REAL NOT NULL)"
            )
            self._reread_file()

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
        return given.startswith(VIRTUAL_KEY_PREFIX) and _digest(given) in self._live

    def is_master(self, headers: Headers) -> bool:
        return token_matches(bearer_of(headers), self.master)

    # --- keeping replicas in step ------------------------------------------------------------------------

    async def share(self, redis: Redis) -> None:
        """From now on the live keys are Redis's: copy this file's keys in (but none revoked anywhere), then
        read them all. Called by the lifespan; a Redis error here stops the start, as a PING failure does."""
        if self._db is None:
            return
        self._redis = redis
        rows = self._db.execute("SELECT digest, key_id, alias, created_at FROM keys").fetchall()
        if rows:
            records = [(d, json_dumps({"key_id": k, "key_alias": a, "created_at": c})) for d, k, a, c in rows]
            script = redis.register_script(KEYS_IMPORT_LUA)
            await script(keys=[LIVE_KEYS, REVOKED_KEYS], args=[v for pair in records for v in pair])
        self._live = await _live_in(redis)

    async def keep_fresh(self, every_s: float) -> None:
        """Runs for the gateway's life: picks up keys created and revoked through other replicas."""
        while True:
            await asyncio.sleep(every_s)
            await self.refresh()

    async def refresh(self) -> None:
        if self._db is None:
            return
        if self._redis is None:
            try:
                self._reread_file()
            except sqlite3.Error as exc:  # a file gone or locked for long: keep the keys as last read
                log.warning("keys_file_unreadable", error=repr(exc))
            return
        changes = self._changes
        try:
            live = await _live_in(self._redis)
        except RedisError as exc:
            # No key can be created or revoked while Redis is down (both are refused), so the set held is
            # still the right one.
            self._warn(exc, "the live keys as last read")
            return
        # A key made or revoked here while the read was on its way may be missing from it (or still in it):
        # keep the set as this replica left it; the next refresh reads both.
        if changes == self._changes:
            self._live = live

    def _reread_file(self) -> None:
        assert self._db is not None
        # data_version moves only when another connection (another gateway process) commits to the file.
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._file_version:
            self._file_version = version
            self._live = {row[0] for row in self._db.execute("SELECT digest FROM keys")}

    # --- the master key's endpoints ----------------------------------------------------------------------

    async def generate(self, alias: str | None) -> dict[str, Any]:
        key = VIRTUAL_KEY_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(key)
        record = {"key_id": digest[:16], "key_alias": alias, "created_at": time.time()}
        if self._redis is not None:
            try:
                await self._redis.hset(LIVE_KEYS, digest, json_dumps(record))
            except RedisError as exc:
                raise _redis_down(exc, "created") from exc
        assert self._db is not None
        self._db.execute(
            "INSERT INTO keys (digest, key_id, alias, created_at) VALUES (?, ?, ?, ?)",
            (digest, record["key_id"], alias, record["created_at"]),
        )
        self._live.add(digest)
        self._changes += 1
        return {"key": key, **record}

    async def listed(self) -> list[dict[str, Any]]:
        return sorted((await self._records()).values(), key=lambda r: r["created_at"])

    async def delete(self, keys: list[str]) -> list[str]:
        """Revoke by key id or by the key itself; returns the ids that were revoked."""
        wanted = {k if not k.startswith(VIRTUAL_KEY_PREFIX) else _digest(k)[:16] for k in keys}
        gone = {d: r["key_id"] for d, r in (await self._records("revoked")).items() if r["key_id"] in wanted}
        if self._redis is not None and gone:
            try:
                async with self._redis.pipeline(transaction=True) as tx:
                    tx.hdel(LIVE_KEYS, *gone)
                    tx.sadd(REVOKED_KEYS, *gone)
                    await tx.execute()
            except RedisError as exc:
                raise _redis_down(exc, "revoked") from exc
        assert self._db is not None
        self._db.executemany("DELETE FROM keys WHERE key_id = ?", [(k,) for k in wanted])
        self._live.difference_update(gone)
        self._changes += 1
        return list(gone.values())

    async def _records(self, what: str = "listed") -> dict[str, dict[str, Any]]:
        """digest -> record of every live key: Redis's when shared (keys made through any replica)."""
        if self._redis is not None:
            try:
                raw = await self._redis.hgetall(LIVE_KEYS)
            except RedisError as exc:
                raise _redis_down(exc, what) from exc
            return {_text(d): json_loads(r) for d, r in raw.items()}
        assert self._db is not None
        rows = self._db.execute("SELECT digest, key_id, alias, created_at FROM keys").fetchall()
        return {d: {"key_id": k, "key_alias": a, "created_at": c} for d, k, a, c in rows}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

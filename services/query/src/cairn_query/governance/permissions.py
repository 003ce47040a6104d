"""Collection permissions, API keys and logins: what the identity routes change, each change an audit record.

Who may use a collection, and which user an API key names, are rows in the store (`store/permissions.py`);
this service is the one way the HTTP layer reads and changes them, and every change is written on the audit
chain next to the answers (kind `permissions`, `key` or `login`), whatever QS_AUDIT_ENABLED says of answers:
who may read what is the first thing an auditor asks.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

from cairn_query.governance.access import Access, require_manager
from cairn_query.governance.audit import AuditLog, utc_now
from cairn_query.store import Store

KEY_PREFIX = "cairn_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class PermissionService:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    async def record(self, kind: str, by: Access, request_id: str | None, **fields: Any) -> None:
        body = {
            "at": utc_now(),
            "kind": kind,
            "outcome": kind,
            "reason_code": None,
            "request_id": request_id,
            "by": by.audit() if by.user is not None else {"user": "operator"},
            **fields,
        }
        await self.audit.write(body)

    async def require_manager(self, access: Access, collection: str) -> None:
        await require_manager(access, self.store, collection)

    async def of(self, collection: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.permissions.get, collection)

    async def replace(
        self,
        by: Access,
        request_id: str | None,
        collection: str,
        owner: str | None,
        writers: list[str],
        readers: list[str],
    ) -> dict[str, Any]:
        """Set who may use a collection; the record holds what it was before and after."""
        before, after = await asyncio.to_thread(
            self.store.permissions.replace, collection, owner, writers, readers
        )
        await self.record("permissions", by, request_id, collection=collection, before=before, after=after)
        return after

    async def keys(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.permissions.api_keys)

    async def make_key(
        self, by: Access, request_id: str | None, user: str, name: str, groups: list[str], admin: bool
    ) -> dict[str, Any]:
        """A new key for `user`: its row with the key itself, which is never stored (only its SHA-256)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = await asyncio.to_thread(
            self.store.permissions.add_key,
            secrets.token_hex(6),
            key_hash(key),
            user,
            name,
            sorted(set(groups)),
            admin,
            by.user or "operator",
        )
        await self.record("key", by, request_id, action="created", key=row)
        return {**row, "key": key}

    async def revoke_key(self, by: Access, request_id: str | None, key_id: str) -> dict[str, Any] | None:
        row = await asyncio.to_thread(self.store.permissions.delete_key, key_id)
        if row is not None:
            await self.record("key", by, request_id, action="revoked", key=row)
        return row

    async def key_by_hash(self, digest: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.store.permissions.key_by_hash, digest)

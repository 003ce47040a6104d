"""Ratings of answers (thumbs up or down, an optional comment), stored by the answer's request id.

A rating is also appended to the audit log as a `feedback` record on the chain, so what users thought of an
answer sits beside what was said, as tamper-evident as the answer's own record; `GET /admin/audit` shows each
answer's current rating, and `GET /admin/feedback` lists the ratings with their question and answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cairn_core import CairnError, ReasonCode

from cairn_query.governance.audit import AuditLog, utc_now
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import FeedbackIn
from cairn_query.store import Store
from cairn_query.store.audit import AuditQuery


class Feedback:
    def __init__(self, store: Store, audit: AuditLog, metrics: QueryMetrics) -> None:
        self.store = store
        self.audit = audit
        self.metrics = metrics

    async def _answer_record(self, request_id: str) -> dict[str, Any] | None:
        rows = await self.audit.find(AuditQuery(request_id=request_id, limit=1))
        return rows[0].record() if rows else None

    async def _asker(self, request_id: str) -> str | None:
        """Who the answer was given to (the owner conversations use): its audit record names them; with the
        audit log off, or the record past retention, the conversation that keeps the answer does."""
        if self.audit.settings.audit_enabled:
            record = await self._answer_record(request_id)
            if record is not None:
                return str(record.get("key_id"))
        return await asyncio.to_thread(self.store.conversations.owner_of_answer, request_id)

    async def rate(self, body: FeedbackIn, owner: str) -> dict[str, Any]:
        if await self._asker(body.request_id) != owner:
            # Only the one who was answered rates it; to anyone else the answer does not exist (the same 404
            # as an unknown id, so a request id reveals nothing), as another owner's conversation does not.
            raise CairnError(ReasonCode.NOT_FOUND, f"No answer with request id {body.request_id!r}.")
        saved = await asyncio.to_thread(
            self.store.conversations.rate, body.request_id, owner, body.rating, body.comment
        )
        self.metrics.feedback.labels(body.rating).inc()
        if self.audit.settings.audit_enabled:
            await self.audit.write(
                {
                    "at": utc_now(),
                    "kind": "feedback",
                    "outcome": "feedback",
                    "reason_code": None,
                    "request_id": body.request_id,
                    "key_id": owner,
                    "rating": body.rating,
                    "comment": body.comment,
                }
            )
        return saved

    async def listing(self, rating: str | None, limit: int, offset: int) -> dict[str, Any]:
        rows, counts = await asyncio.to_thread(self.store.conversations.feedback, rating, limit, offset)
        for row in rows:
            record = await self._answer_record(row["request_id"])
            row["question"] = record.get("question") if record else None
            row["answer"] = record.get("answer") if record else None
        return {"feedback": rows, "counts": {"up": counts.get("up", 0), "down": counts.get("down", 0)}}

    async def attach(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each audit record with its answer's current rating (None when unrated)."""
        ids = [r["request_id"] for r in records if r.get("request_id")]
        ratings = await asyncio.to_thread(self.store.conversations.ratings, ids) if ids else {}
        for r in records:
            r["feedback"] = ratings.get(str(r.get("request_id")))
        return records

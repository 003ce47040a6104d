"""The audit log of what was said: one append-only, hash-chained record per answer (docs/governance.md).

`chat/turn.py` follows one chat from question to final answer and writes its record here before the last frame
goes out, so a client that has its answer can read the record at once. A failing write is logged and counted
(`cairn_qs_audit_failures`) and the user still gets the answer, unless QS_AUDIT_FAIL_CLOSED is set: then the
answer is withheld (INTERNAL_ERROR), for deployments where an unrecorded answer must not be given at all.

Retention (QS_AUDIT_RETENTION_DAYS) removes whole days: at startup and every hour, every record written
before the start of the day that many days ago goes, and a `retention` record on the chain says how many.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from cairn_core import CairnError, ReasonCode

from cairn_query.metrics import QueryMetrics
from cairn_query.settings import QuerySettings
from cairn_query.store import Store
from cairn_query.store.audit import AuditQuery, AuditRow, ChainReport, verify_chain

log = structlog.get_logger("audit")


def utc_now() -> str:
    """Milliseconds, so that records of one second still sort by time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AuditUnavailable(CairnError):
    """The record could not be written and QS_AUDIT_FAIL_CLOSED says the answer must not go out without it."""

    def __init__(self) -> None:
        # The store's own words stay in QS's log (`audit_write_failed`): they can name tables, paths or hosts.
        super().__init__(
            ReasonCode.INTERNAL_ERROR,
            "The answer could not be written to the audit log, and this deployment gives no unrecorded "
            "answers.",
        )


class AuditLog:
    def __init__(self, settings: QuerySettings, store: Store, metrics: QueryMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics

    async def write(self, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.store.audit.append, body)
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error(
                "audit_write_failed", error=f"{type(exc).__name__}: {exc}", request_id=body.get("request_id")
            )
            if self.settings.audit_fail_closed:
                raise AuditUnavailable() from exc
        finally:
            self.metrics.audit_latency.observe(time.perf_counter() - started)

    async def find(self, query: AuditQuery) -> list[AuditRow]:
        return await asyncio.to_thread(self.store.audit.find, query)

    async def verify(self) -> ChainReport:
        def walk() -> ChainReport:
            rows, anchor, head = self.store.audit.chain()
            return verify_chain(rows, anchor, head)

        return await asyncio.to_thread(walk)

    async def purge(self, now: datetime | None = None) -> int:
        """Remove the days past retention; 0 days keeps everything."""
        days = self.settings.audit_retention_days
        if not days:
            return 0
        today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
        cutoff = (today - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = {
            "at": utc_now(),
            "kind": "retention",
            "outcome": "retention",
            "reason_code": None,
            "before": cutoff,
            "retention_days": days,
        }
        removed = await asyncio.to_thread(self.store.audit.purge_before, cutoff, body)
        if removed:
            log.info("audit_retention", removed=removed, before=cutoff)
        return removed

    async def retention(self) -> None:
        """Run retention now and every hour (the lifespan runs this while the app lives)."""
        while True:
            try:
                await self.purge()
            except Exception as exc:  # a store hiccup must not end the loop: the next hour tries again
                log.error("audit_retention_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(3600)

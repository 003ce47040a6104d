"""The audit log of what was said: one append-only, hash-chained record per answer (docs/governance.md).

`Turn` follows one chat from question to final answer and writes its record before the last frame goes out,
so a client that has its answer can read the record at once. A failing write is logged and counted
(`cairn_qs_audit_failures`) and the user still gets the answer, unless QS_AUDIT_FAIL_CLOSED is set: then the
answer is withheld (INTERNAL_ERROR), for deployments where an unrecorded answer must not be given at all.

Retention (QS_AUDIT_RETENTION_DAYS) removes whole days: at startup and every hour, every record written
before the start of the day that many days ago goes, and a `retention` record on the chain says how many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from cairn_core import CairnError, ReasonCode

from cairn_query.governance.policy import Finding, Verdict
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


@dataclass
class Turn:
    """One chat on its way to the audit log: what was asked, what the rules found, what was answered."""

    audit: AuditLog
    request_id: str | None
    trace_id: str | None
    key_id: str
    collection: str | None
    question: str  # as the rules left it: redacted when a pii rule says so
    started: float = field(default_factory=time.perf_counter)
    findings: list[Finding] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    rejected: Finding | None = None  # the question's rule that withholds any answer
    recorded: bool = False  # one record per answer: a failure after it (a bug) adds none
    # Called with what the user got, once, after the record is written: a conversation keeps the answer. A
    # record that fails closed withholds the answer, so it is not kept either (a reload shows what was given).
    on_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    def add(self, verdict: Verdict) -> None:
        self.findings.extend(verdict.findings)

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [f.public() for f in self.findings if f.action == "warn"]

    async def record(
        self,
        *,
        status: str,
        reason_code: str | None,
        answer: str,
        citations: Iterable[dict[str, Any]] = (),
        withheld: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        usage: dict[str, Any] | None = None,
        cache: str | None = None,
        rule: str | None = None,
        message: str | None = None,
    ) -> None:
        if self.recorded:
            return
        self.recorded = True
        citations = list(citations)
        if self.audit.settings.audit_enabled:
            await self._write(
                status, reason_code, answer, citations, withheld, model, provider, usage, cache, rule
            )
        if self.on_answer is not None:
            await self.on_answer(
                {
                    "status": status,
                    "reason_code": reason_code,
                    "message": message,
                    "answer": answer,
                    "citations": citations,
                    "warnings": self.warnings if status == "ok" else [],
                    "policy_rule": rule,
                    "request_id": self.request_id,
                    "model": model,
                }
            )

    async def _write(
        self,
        status: str,
        reason_code: str | None,
        answer: str,
        citations: list[dict[str, Any]],
        withheld: str | None,
        model: str | None,
        provider: str | None,
        usage: dict[str, Any] | None,
        cache: str | None,
        rule: str | None,
    ) -> None:
        warned = status == "ok" and any(f.action == "warn" for f in self.findings)
        usage = usage or {}
        await self.audit.write(
            {
                "at": utc_now(),
                "kind": "answer",
                "request_id": self.request_id,
                "trace_id": self.trace_id,
                "key_id": self.key_id,
                "collection": self.collection,
                "question": self.question,
                "retrieved": self.retrieved,
                "cited": list(dict.fromkeys(c["chunk_id"] for c in citations)),
                "answer": answer,
                "withheld": withheld,  # the model's answer that the user did not get (a fallback)
                "model": model,
                "provider": provider,
                "outcome": "warn" if warned else status,
                "reason_code": reason_code,
                "rule": rule,
                "rules": [f.record() for f in self.findings],
                "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "cache": cache,
            }
        )

"""`Turn`: one chat from question to final answer, and its record in the audit log (docs/governance.md).

The pipeline fills it as it decides (the question as the rules left it, what was retrieved, what each rule
found) and hands it the answer the user got (`Done`) before the last event goes out, so a client that has its
answer can read the record at once. A record that fails closed (QS_AUDIT_FAIL_CLOSED) raises AuditUnavailable
from `record`, and the answer is withheld.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cairn_query.chat.events import Done
from cairn_query.governance.access import Access
from cairn_query.governance.audit import AuditLog, utc_now
from cairn_query.governance.policy import Finding, Verdict


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
    # Who asks and what they may read (governance/access.py): retrieval and the answer cache go by it. A turn
    # nobody named reads nothing, so a new way to ask cannot forget the permission filter and read it all.
    access: Access = field(default_factory=Access.nobody)

    def add(self, verdict: Verdict) -> None:
        self.findings.extend(verdict.findings)

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [f.public() for f in self.findings if f.action == "warn"]

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    async def record(self, done: Done) -> None:
        if self.recorded:
            return
        self.recorded = True
        citations = [c.model_dump(mode="json") for c in done.citations]
        if self.audit.settings.audit_enabled:
            await self.audit.write(self._body(done, citations))
        if self.on_answer is not None:
            await self.on_answer(
                {
                    "status": done.status,
                    "reason_code": done.reason_code.value if done.reason_code else None,
                    "message": done.message,
                    "answer": done.answer,
                    "citations": citations,
                    "warnings": self.warnings if done.status == "ok" else [],
                    "policy_rule": done.policy_rule,
                    "request_id": self.request_id,
                    "model": done.model,
                }
            )

    def _body(self, done: Done, citations: list[dict[str, Any]]) -> dict[str, Any]:
        warned = done.status == "ok" and any(f.action == "warn" for f in self.findings)
        usage = done.usage or {}
        return {
            "at": utc_now(),
            "kind": "answer",
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "key_id": self.key_id,
            "collection": self.collection,
            "question": self.question,
            "retrieved": self.retrieved,
            "cited": list(dict.fromkeys(c["chunk_id"] for c in citations)),
            "answer": done.answer,
            "withheld": done.withheld,  # the model's answer that the user did not get (a fallback)
            "model": done.model,
            "provider": done.provider,
            "outcome": "warn" if warned else done.status,
            "reason_code": done.reason_code.value if done.reason_code else None,
            "rule": done.policy_rule,
            "rules": [f.record() for f in self.findings],
            "latency_ms": self.latency_ms(),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "cache": done.cache,
            **({"user": self.access.user, "groups": list(self.access.groups)} if self.access.user else {}),
        }

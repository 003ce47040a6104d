"""Grounded chat, decided once: a JSON answer and a stream are two renderings (render.py) of `ChatPipeline.run`.

    question rules → cached answer | retrieve → evidence gate → generate → citations → support → answer rules
                   → remember → record                          any failure on the way → fallback

A cache hit answers at once. No relevant chunk, or no sentence in them close enough to the question
(evidence.py), answers NO_CONTEXT without calling the model; middling evidence shows the closest passages
(WEAK_EVIDENCE). Otherwise the question and the best sentences go to `/v1/generate` with `citations_required`;
every cited id must be one QS sent, and the answer must be supported by the chunks it cites (`check_support`).
Whatever goes wrong on the way (gateway down, timeout, QUEUE_FULL, CIRCUIT_OPEN, malformed output, a citation
outside what was retrieved, an unsupported answer, a rule of the policy) becomes a `fallback`: the search
results with a plain message and the reason code. Never a 500, never a hang (docs/query-service.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import structlog
from cairn_core import Citation, ReasonCode, StopReason, UpstreamError, check_support

from cairn_query.chat.cache import Cache
from cairn_query.chat.events import (
    ChatEvent,
    Cited,
    Delta,
    Done,
    Fallback,
    Generated,
    Meta,
    Redacted,
    Sources,
    Warned,
)
from cairn_query.chat.fallback import fallback_message, fallback_provider_message
from cairn_query.chat.plan import Plan, Planner
from cairn_query.chat.prompt_budget import generate_request
from cairn_query.chat.relay import answered_by_of, generated, streamed
from cairn_query.chat.turn import Turn
from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.retrieval import Retriever
from cairn_query.governance.audit import AuditUnavailable
from cairn_query.governance.policy import Policy, Verdict
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import ChatRequest
from cairn_query.settings import QuerySettings
from cairn_query.store import Store

log = structlog.get_logger("chat")


@dataclass
class Draft:
    """The model's answer as it arrives, and what went wrong with it."""

    text: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    error: ReasonCode | None = None
    end: Generated | None = None
    shown: str | None = None  # the answer as the rules left it (redacted), once they let it through

    @property
    def answer(self) -> str:
        return "".join(self.text)


@dataclass(frozen=True)
class Failure:
    """Why the answer is not given, and what the user and the audit log are told about it."""

    code: ReasonCode
    detail: str | None = None  # for the user: the rule's words, the part of the answer not found
    rule: str | None = None
    withheld: str | None = None
    discard: bool = False  # answer text was drawn already


@dataclass
class ChatPipeline:
    settings: QuerySettings
    store: Store
    retriever: Retriever
    gateway: GatewayClient
    cache: Cache
    metrics: QueryMetrics
    policy: Policy  # replaced whole by a reload (wiring.reload_policy); read once per check

    def __post_init__(self) -> None:
        s = self
        self.planner = Planner(s.settings, s.store, s.retriever, s.gateway, s.cache, s.metrics)

    async def run(self, req: ChatRequest, turn: Turn, stream: bool) -> AsyncGenerator[ChatEvent, None]:
        """One chat's events. `stream`: the gateway is asked for a stream, and once events have gone out, an
        error (a bug, an audit record that fails closed) ends them with a fallback instead of raising."""
        plan = await self._screen_and_retrieve(req, turn)
        yield Sources(plan.sources, plan.cached is not None)
        draft, finished = Draft(), False
        try:
            async with contextlib.aclosing(self._answer(req, plan, turn, draft, stream)) as events:
                async for event in events:
                    finished = isinstance(event, Done)
                    yield event
        except Exception as exc:
            if not stream or finished:
                raise
            detail = exc.message if isinstance(exc, AuditUnavailable) else None
            if detail is None:
                log.error("chat_stream_failed", exc_info=exc)
            async for event in self._fall_back(
                turn, Failure(ReasonCode.INTERNAL_ERROR, detail, discard=True), draft
            ):
                yield event

    async def _answer(
        self, req: ChatRequest, plan: Plan, turn: Turn, draft: Draft, stream: bool
    ) -> AsyncGenerator[ChatEvent, None]:
        failure: Failure | None
        if turn.rejected is not None:
            failure = Failure(ReasonCode.POLICY_REJECTED, turn.rejected.detail, turn.rejected.rule)
        elif plan.cached is not None:
            async for event in self._from_cache(req, plan, turn, draft):
                yield event
            return
        elif plan.no_answer is not None:
            failure = Failure(plan.no_answer)
        else:
            async with contextlib.aclosing(self._generate(req, plan, draft, stream)) as events:
                async for event in events:
                    yield event
            failure = self._failure(req, plan, draft) or await self._answer_rules(req, plan, turn, draft)
        if failure is None:
            async for event in self._answered(plan, turn, draft):
                yield event
        else:
            async for event in self._fall_back(turn, failure, draft):
                yield event

    # --- before the model: the question's rules, the cache, retrieval and the evidence gate ---------------

    async def _screen_and_retrieve(self, req: ChatRequest, turn: Turn) -> Plan:
        """The question's rules, then the cache or retrieval (a rejected question still gets its search results)."""
        verdict = await self.policy.check_question(req.question)
        self._count(verdict)
        turn.add(verdict)
        turn.question = verdict.text
        turn.rejected = verdict.rejected
        plan = await self.planner.plan(req, turn.access)
        turn.retrieved = plan.retrieved
        return plan

    # --- the model's answer and its checks --------------------------------------------------------------

    async def _generate(
        self, req: ChatRequest, plan: Plan, draft: Draft, stream: bool
    ) -> AsyncGenerator[ChatEvent, None]:
        """The model's answer, passed on as it comes; `draft` keeps it for the checks, or why it failed."""
        started = time.perf_counter()
        greq = generate_request(self.settings, req, plan.context, stream)
        if stream:
            answer = streamed(self.gateway, greq, started + self.settings.gateway_timeout_ms / 1000)
        else:
            answer = generated(self.gateway, greq)
        try:
            async with contextlib.aclosing(answer) as events:
                async for event in events:
                    if isinstance(event, Generated):
                        draft.end = event
                        return
                    if isinstance(event, Meta):
                        draft.model, draft.provider = event.model, event.provider
                    elif isinstance(event, Delta):
                        draft.text.append(event.text)
                    elif isinstance(event, Cited):
                        try:
                            draft.citations = self._check_citations(plan, event.citations)
                        except UpstreamError as exc:
                            draft.error = exc.reason_code
                            return
                        # QS's checked list, not the gateway's frame: it adds what the gateway cannot know
                        # (each chunk's page).
                        event = Cited(draft.citations)
                    else:  # Broken: the gateway's error frame is held until its `done`
                        draft.error = event.reason_code
                        if event.final:
                            return
                        continue
                    yield event
        finally:
            self.metrics.gateway_latency.labels(str(stream).lower()).observe(time.perf_counter() - started)

    def _check_citations(self, plan: Plan, citations: list[Citation]) -> list[Citation]:
        """Second line of defence: every cited id must be one QS retrieved and sent (the gateway checks too)."""
        allowed = {c.chunk_id: c for c in plan.context}
        bad = [c.chunk_id for c in citations if c.chunk_id not in allowed]
        if bad:
            raise UpstreamError(ReasonCode.INVALID_CITATION, f"Cited chunks that were not retrieved: {bad}.")
        ids = list(dict.fromkeys(c.chunk_id for c in citations))
        # The page is QS's to add: the gateway sees only the context chunks, which have none.
        pages = {h.chunk.chunk_id: h.chunk.page for h in (plan.outcome.hits if plan.outcome else [])}
        return [
            Citation(chunk_id=i, title=allowed[i].title, url=allowed[i].url, page=pages.get(i)) for i in ids
        ]

    def _failure(self, req: ChatRequest, plan: Plan, draft: Draft) -> Failure | None:
        """Why the gateway's answer cannot be shown, or None: it ended well, cites, and is supported."""
        drawn = bool(draft.text)
        end = draft.end
        if end is None or draft.error is not None or answered_by_of(end.status, end.answered_by) is None:
            code = draft.error or (end.reason_code if end else None) or ReasonCode.PROVIDER_ERROR
            return Failure(code, discard=drawn)
        if req.citations_required and not draft.citations:
            return Failure(ReasonCode.MISSING_CITATIONS, discard=drawn)
        if req.citations_required:
            cited = plan.texts_of([c.chunk_id for c in draft.citations]) or []
            verdict = check_support(draft.answer, cited, self.settings.support_min_overlap)
            if not verdict:
                log.info(
                    "chat_fallback", reason_code=ReasonCode.UNSUPPORTED_ANSWER.value, detail=verdict.reason
                )
                return Failure(
                    ReasonCode.UNSUPPORTED_ANSWER, verdict.reason, withheld=draft.answer, discard=drawn
                )
        return None

    # --- governance (policy.py): the answer's rules ------------------------------------------------------

    def _count(self, verdict: Verdict) -> None:
        for f in verdict.findings:
            self.metrics.policy_findings.labels(f.rule, f.action).inc()

    async def _answer_rules(self, req: ChatRequest, plan: Plan, turn: Turn, draft: Draft) -> Failure | None:
        """The answer's rules on the model's answer; a redaction is kept in `draft` as the answer shown."""
        verdict = await self._check_answer(
            req, plan, draft.answer, [c.chunk_id for c in draft.citations], turn
        )
        if verdict.rejected is not None:
            rejected = verdict.rejected
            code = ReasonCode.POLICY_REJECTED
            return Failure(
                code, rejected.detail, rejected.rule, withheld=verdict.text, discard=bool(draft.text)
            )
        draft.shown = verdict.text
        return None

    async def _check_answer(
        self, req: ChatRequest, plan: Plan, answer: str, cited: list[str], turn: Turn
    ) -> Verdict:
        policy = self.policy
        embed = None
        if policy.needs_embeddings:

            async def embed(texts: list[str]) -> list[list[float]]:
                return (await self.gateway.embed(texts))[0]

        # Only a support rule reads the sources: a cached answer's come from the store, so no rule, no reads.
        sources = await self._source_texts(plan, cited, turn) if policy.needs_sources else []
        verdict = await policy.check_answer(req.question, answer, sources, embed)
        self._count(verdict)
        turn.add(verdict)
        return verdict

    async def _source_texts(self, plan: Plan, cited: list[str], turn: Turn) -> list[str]:
        """What an answer's claims are checked against: its cited chunks, or every chunk sent if it cites none."""
        texts = plan.texts_of(cited or [c.chunk_id for c in plan.context])
        if texts is not None:
            return texts
        readable = turn.access.collections
        rows = await asyncio.to_thread(lambda: [self.store.get_chunk(i, readable) for i in cited])
        return [f"{c.heading or ''}\n{c.text}" for c in rows if c is not None]

    # --- the ends: an answer, a cached answer, a fallback --------------------------------------------------

    async def _answered(self, plan: Plan, turn: Turn, draft: Draft) -> AsyncGenerator[ChatEvent, None]:
        """The end of an answer the checks let through: a redaction, the warnings, the record, then `Done`."""
        end = draft.end
        assert end is not None
        shown = draft.answer if draft.shown is None else draft.shown
        if shown != draft.answer:
            # The text drawn so far held what a pii rule redacts: the page replaces it with this.
            yield Redacted(text=shown)
        answered_by = answered_by_of(end.status, end.answered_by)
        by_fallback = answered_by == "fallback_provider"
        done = Done(
            "ok",
            shown,
            turn.latency_ms(),
            draft.citations,
            reason_code=end.reason_code if by_fallback else None,
            message=fallback_provider_message(draft.provider, end.reason_code) if by_fallback else None,
            # Not cached when a fallback provider answered: the model answers the next asker, once it is back.
            cache="off" if by_fallback else "miss",
            model=draft.model,
            provider=draft.provider,
            answered_by="fallback_provider" if by_fallback else "model",
            usage=end.usage,
            upstream=end.upstream,
            raw=end.raw,
        )
        if not by_fallback:
            await self._remember(plan, done)
        async for event in self._deliver(turn, done):
            yield event

    async def _deliver(self, turn: Turn, done: Done) -> AsyncGenerator[ChatEvent, None]:
        """The warnings, the record, then `Done`: the end of every answer that is given."""
        for warning in turn.warnings:
            yield Warned.model_validate(warning)
        await turn.record(done)
        yield done

    async def _from_cache(
        self, req: ChatRequest, plan: Plan, turn: Turn, draft: Draft
    ) -> AsyncGenerator[ChatEvent, None]:
        """A cached answer, checked by today's rules before any of it is drawn."""
        cached = plan.cached
        assert cached is not None
        citations = [Citation.model_validate(c) for c in cached["citations"]]
        verdict = await self._check_answer(req, plan, cached["answer"], [c.chunk_id for c in citations], turn)
        if (rejected := verdict.rejected) is not None:
            code = ReasonCode.POLICY_REJECTED
            failure = Failure(code, rejected.detail, rejected.rule, withheld=verdict.text)
            async for event in self._fall_back(turn, failure, draft):
                yield event
            return
        model = cached.get("model")
        yield Meta(turn.request_id, model, "cache")
        yield Delta(verdict.text)
        yield Cited(citations)
        done = Done(
            "ok",
            verdict.text,
            turn.latency_ms(),
            citations,
            cache="hit",
            model=model,
            provider=cached.get("provider"),
            answered_by="model",
            stop_reason=StopReason.EOS,
        )
        async for event in self._deliver(turn, done):
            yield event

    async def _fall_back(self, turn: Turn, failure: Failure, draft: Draft) -> AsyncGenerator[ChatEvent, None]:
        code = failure.code
        self.metrics.fallbacks.labels(code.value).inc()
        message = fallback_message(code, failure.detail)
        passages = code is ReasonCode.WEAK_EVIDENCE
        yield Fallback(
            reason_code=code,
            message=message,
            discard_answer=failure.discard,
            policy_rule=failure.rule,
            passages=passages,
        )
        done = Done(
            "fallback",
            message,
            turn.latency_ms(),
            reason_code=code,
            message=message,
            model=draft.model,
            provider=draft.provider,
            stop_reason=StopReason.TIMEOUT if code is ReasonCode.PROVIDER_TIMEOUT else None,
            policy_rule=failure.rule,
            withheld=failure.withheld,
            usage=draft.end.usage if draft.end else None,
        )
        with contextlib.suppress(AuditUnavailable):  # the answer is withheld already: nothing more to keep
            await turn.record(done)
        yield done

    async def _remember(self, plan: Plan, done: Done) -> None:
        citations = [c.model_dump(mode="json") for c in done.citations]
        entry = {"answer": done.answer, "citations": citations, "sources": plan.sources}
        await self.cache.put(plan.key, {**entry, "model": done.model, "provider": done.provider})

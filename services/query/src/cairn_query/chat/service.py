"""Grounded chat: cache → retrieve → generate with citations → validate → cache; any failure → search results.

The decision tree (docs/query-service.md): a cache hit answers at once; no relevant chunk, or no sentence in
them close enough to the question (evidence.py), answers NO_CONTEXT without calling the model; otherwise the
question and the best sentences go to `/v1/generate` with `citations_required`, and the answer must be
supported by the chunks it cites (`check_support`). Whatever goes wrong on the way (gateway down, timeout,
QUEUE_FULL, CIRCUIT_OPEN, malformed output, a citation outside what was retrieved, an unsupported answer)
becomes a `fallback`: the search results with a plain message and the reason code. Never a 500, never a hang.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import structlog
from cairn_core import (
    ChatMessage,
    Citation,
    ContextChunk,
    GenerateRequest,
    ReasonCode,
    UpstreamError,
    check_support,
)

from cairn_query.chat.cache import Cache, cache_key
from cairn_query.chat.evidence import select_evidence
from cairn_query.chat.followup import Followups
from cairn_query.chat.prompt_budget import conversation_budget, fit_conversation
from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.retrieval import Hit, Retriever, SearchOutcome
from cairn_query.governance.access import Access
from cairn_query.governance.audit import Turn
from cairn_query.governance.policy import Finding, Policy, Verdict
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import ChatRequest
from cairn_query.settings import QuerySettings
from cairn_query.store import Store

log = structlog.get_logger("chat")

NO_CONTEXT_MESSAGE = "I could not find anything about this in your documents."
WEAK_EVIDENCE_MESSAGE = (
    "Your documents may not answer this. These are the closest passages, not an answer: check them yourself."
)


def answered_by_of(status: str, answered_by: str | None) -> str | None:
    """Who wrote the gateway's answer; a gateway from before `answered_by` said only "ok" for the model."""
    if answered_by in ("model", "fallback_provider"):
        return answered_by
    return "model" if status == "ok" else None


def fallback_provider_message(provider: str | None, code: ReasonCode | str | None) -> str:
    why = f" ({ReasonCode(code).value})" if code else ""
    if provider == "sources":
        return f"No model answered{why}: this is quoted word for word from the best-matching source."
    return f"The model did not answer{why}; the fallback provider {provider or 'unknown'} did."


def fallback_message(code: ReasonCode, detail: str | None = None) -> str:
    if code is ReasonCode.NO_CONTEXT:
        return NO_CONTEXT_MESSAGE
    if code is ReasonCode.WEAK_EVIDENCE:
        return WEAK_EVIDENCE_MESSAGE
    if code is ReasonCode.INTERNAL_ERROR and detail:
        return f"{detail} Here are the most relevant passages from your documents."
    if code is ReasonCode.POLICY_REJECTED:
        because = f": {detail}" if detail else ""
        return (
            f"The answer was withheld by this deployment's policy{because} ({code.value}). "
            "Here are the most relevant passages from your documents."
        )
    if code is ReasonCode.UNSUPPORTED_ANSWER:
        because = f" ({detail})" if detail else ""
        return (
            f"The model's answer was not supported by your documents{because}, so it is not shown "
            f"({code.value}). Here are the most relevant passages from your documents."
        )
    why = {
        ReasonCode.PROVIDER_TIMEOUT: "it did not answer in time",
        ReasonCode.QUEUE_FULL: "it is busy with other questions",
        ReasonCode.CIRCUIT_OPEN: "it failed several times in a row",
        ReasonCode.PROVIDER_UNAVAILABLE: "it cannot be reached",
        ReasonCode.INVALID_CITATION: "its answer cited sources that were not retrieved",
        ReasonCode.MISSING_CITATIONS: "its answer cited no sources",
        ReasonCode.MALFORMED_OUTPUT: "its answer could not be read",
    }.get(code, "it returned an error")
    return (
        f"The model is unavailable right now ({why}; {code.value}). "
        "Here are the most relevant passages from your documents."
    )


@dataclass
class Prepared:
    """Everything decided before the model is called."""

    key: str
    cached: dict[str, Any] | None
    outcome: SearchOutcome | None = None
    context: list[ContextChunk] | None = None
    # Middling evidence: no answer, these closest passages instead (WEAK_EVIDENCE), best first.
    passages: list[dict[str, Any]] | None = None

    @property
    def no_answer(self) -> ReasonCode | None:
        """Why the model is not asked: nothing relevant (NO_CONTEXT), or only passages close to it."""
        if self.cached is not None or self.context:
            return None
        return ReasonCode.WEAK_EVIDENCE if self.passages else ReasonCode.NO_CONTEXT

    @property
    def sources(self) -> list[dict[str, Any]]:
        if self.cached is not None:
            return list(self.cached["sources"])
        if self.passages:
            return self.passages
        # Only relevant chunks: a vector hit far below the similarity floor is noise to the reader.
        return [h.public() for h in (self.outcome.relevant if self.outcome else [])]

    @property
    def retrieved(self) -> list[str]:
        if self.cached is not None:
            return [s["chunk_id"] for s in self.cached["sources"]]
        return [h.chunk.chunk_id for h in (self.outcome.hits if self.outcome else [])]

    @property
    def allowed(self) -> dict[str, ContextChunk]:
        return {c.chunk_id: c for c in self.context or []}

    def cited_texts(self, citations: list[Citation]) -> list[str]:
        """The whole chunks behind `citations` (not only the sentences sent), title first."""
        chunks = {h.chunk.chunk_id: h.chunk for h in (self.outcome.hits if self.outcome else [])}
        return [
            f"{c.heading or ''}\n{c.text}" for cit in citations if (c := chunks.get(cit.chunk_id)) is not None
        ]


class Unsupported(UpstreamError):
    """The answer is not backed by the chunks it cites; `detail` says which part, for the user."""

    def __init__(self, detail: str) -> None:
        super().__init__(ReasonCode.UNSUPPORTED_ANSWER, f"Unsupported answer: {detail}.")
        self.detail = detail


def budget(hits: list[Hit], tokens: int) -> list[ContextChunk]:
    """The best chunks that fit in `tokens` (about 4 characters each); the first one always goes, cut if need be."""
    out: list[ContextChunk] = []
    left = tokens * 4
    for hit in hits:
        text = hit.chunk.text
        if len(text) > left:
            if out:
                continue
            text = text[:left]
        out.append(
            ContextChunk(chunk_id=hit.chunk.chunk_id, title=hit.chunk.heading, url=hit.chunk.url, text=text)
        )
        left -= len(text)
    return out


class ChatService:
    def __init__(
        self,
        settings: QuerySettings,
        store: Store,
        retriever: Retriever,
        gateway: GatewayClient,
        cache: Cache,
        metrics: QueryMetrics,
        policy: Policy,
    ) -> None:
        self.policy = policy  # replaced whole by a reload (routes.reload_policy); read once per check
        self.settings = settings
        self.store = store
        self.retriever = retriever
        self.gateway = gateway
        self.cache = cache
        self.metrics = metrics
        self.followups = Followups(settings, gateway)

    def top_k(self, req: ChatRequest) -> int:
        return req.top_k or self.settings.top_k

    async def prepare(self, req: ChatRequest, access: Access) -> Prepared:
        # The version is read before retrieval: an ingest racing with this request makes the key stale, never
        # the cached answer newer than its key.
        version = await asyncio.to_thread(self.store.version)
        model = req.model or self.settings.model
        conv = [(m.role, m.content) for m in req.conversation()]
        # Keyed by what the asker may read too: an answer is never served to someone with other permissions.
        key = cache_key(conv, req.collection, req.filters, self.top_k(req), model, version, access.scope_key)
        cached = await self.cache.get(key) if self.settings.cache_size and req.cache else None
        self.metrics.cache.labels("hit" if cached else "miss").inc()
        if cached is not None:
            return Prepared(key, cached)
        # A follow-up ("and for Corvale?") is searched as a standalone question (followup.py).
        question = await self.followups.standalone(req.conversation())
        outcome = await self.retriever.search(
            question, self.top_k(req), req.collection, req.filters, access.collections
        )
        if not self.settings.evidence_sentences:
            return Prepared(key, None, outcome, budget(outcome.relevant, self.settings.context_tokens))
        evidence = await select_evidence(self.settings, self.store, self.gateway, question, outcome)
        answerable = evidence.answerable(self.settings.min_evidence)
        strong = answerable and evidence.answerable(self.answer_evidence)
        log.info(
            "evidence",
            sentences=len(evidence.sentences),
            match=None if evidence.match is None else round(evidence.match, 4),
            answerable=answerable,
            strong=strong,
        )
        if answerable and not strong:
            return Prepared(key, None, outcome, [], passages=evidence.passages())
        return Prepared(key, None, outcome, evidence.context() if answerable else [])

    @property
    def answer_evidence(self) -> float:
        s = self.settings
        return max(s.min_evidence, s.answer_evidence)

    def generate_request(self, req: ChatRequest, prep: Prepared, stream: bool) -> GenerateRequest:
        context = prep.context or []
        # The sources go whole; the conversation's newest turns fill the rest of the prompt (prompt_budget.py).
        conversation = req.conversation()
        messages = fit_conversation(conversation, conversation_budget(self.settings.prompt_tokens, context))
        if len(messages) < len(conversation):
            log.info("conversation_trimmed", kept=len(messages), dropped=len(conversation) - len(messages))
        if not req.citations_required:
            # The gateway renders sources only for grounded requests; without citations QS adds them itself.
            sources = "\n\n".join(f"[{c.chunk_id}] {c.title or ''}\n{c.text}" for c in context)
            system = f"Answer using the sources below when they help.\n\nSources:\n{sources}"
            messages = [ChatMessage(role="system", content=system), *messages]
        return GenerateRequest(
            messages=messages,
            model=req.model or self.settings.model,
            max_tokens=req.max_tokens or self.settings.max_tokens,
            stream=stream,
            timeout_ms=self.settings.gateway_timeout_ms,
            citations_required=req.citations_required,
            context_chunks=context if req.citations_required else [],
        )

    def check_citations(self, prep: Prepared, citations: list[Citation]) -> list[Citation]:
        """Second line of defence: every cited id must be one QS retrieved and sent (the gateway checks too)."""
        allowed = prep.allowed
        bad = [c.chunk_id for c in citations if c.chunk_id not in allowed]
        if bad:
            raise UpstreamError(ReasonCode.INVALID_CITATION, f"Cited chunks that were not retrieved: {bad}.")
        out: list[Citation] = []
        # The page is QS's to add: the gateway sees only the context chunks, which have none.
        pages = {h.chunk.chunk_id: h.chunk.page for h in (prep.outcome.hits if prep.outcome else [])}
        for c in citations:
            if c.chunk_id not in {x.chunk_id for x in out}:
                src = allowed[c.chunk_id]
                out.append(
                    Citation(chunk_id=c.chunk_id, title=src.title, url=src.url, page=pages.get(c.chunk_id))
                )
        return out

    def check_support(self, prep: Prepared, answer: str, citations: list[Citation]) -> None:
        """Raise `Unsupported` unless every sentence, number and name of the answer is in a cited chunk."""
        verdict = check_support(answer, prep.cited_texts(citations), self.settings.support_min_overlap)
        if not verdict:
            raise Unsupported(verdict.reason)

    def fallback_body(
        self,
        prep: Prepared,
        code: ReasonCode,
        rid: str | None,
        detail: str | None = None,
        rule: str | None = None,
    ) -> dict[str, Any]:
        self.metrics.fallbacks.labels(code.value).inc()
        message = fallback_message(code, detail)
        return {
            "answer": message,
            "citations": [],
            "sources": prep.sources if code is not ReasonCode.NO_CONTEXT else [],
            "passages": code is ReasonCode.WEAK_EVIDENCE,
            "status": "fallback",
            "reason_code": code.value,
            "message": message,
            "cache": "off",
            "model": None,
            "provider": None,
            "request_id": rid,
            "answered_by": None,
            "policy_rule": rule,
            "warnings": [],
        }

    async def remember(self, prep: Prepared, body: dict[str, Any]) -> None:
        await self.cache.put(
            prep.key,
            {k: body[k] for k in ("answer", "citations", "sources", "model", "provider")},
        )

    # --- governance (policy.py, audit.py) ---------------------------------------------------------------

    def count(self, verdict: Verdict) -> None:
        for f in verdict.findings:
            self.metrics.policy_findings.labels(f.rule, f.action).inc()

    async def start(self, req: ChatRequest, turn: Turn) -> Prepared:
        """The question's rules, then retrieval (a rejected question still gets its search results)."""
        verdict = await self.policy.check_question(req.question)
        self.count(verdict)
        turn.add(verdict)
        turn.question = verdict.text
        turn.rejected = verdict.rejected
        prep = await self.prepare(req, turn.access)
        turn.retrieved = prep.retrieved
        return prep

    async def _source_texts(self, prep: Prepared, cited: list[str], access: Access) -> list[str]:
        """What an answer's claims are checked against: its cited chunks, or every chunk sent if it cites none."""
        if prep.outcome is not None:
            chunks = {h.chunk.chunk_id: h.chunk for h in prep.outcome.hits}
            ids = cited or [c.chunk_id for c in prep.context or []]
            return [f"{c.heading or ''}\n{c.text}" for i in ids if (c := chunks.get(i)) is not None]
        rows = await asyncio.to_thread(lambda: [self.store.get_chunk(i, access.collections) for i in cited])
        return [f"{c.heading or ''}\n{c.text}" for c in rows if c is not None]

    async def check_answer(
        self, req: ChatRequest, prep: Prepared, answer: str, cited: list[str], turn: Turn
    ) -> Verdict:
        policy = self.policy
        embed = None
        if policy.needs_embeddings:

            async def embed(texts: list[str]) -> list[list[float]]:
                return (await self.gateway.embed(texts))[0]

        # Only a support rule reads the sources: a cached answer's come from the store, so no rule, no reads.
        sources = await self._source_texts(prep, cited, turn.access) if policy.needs_sources else []
        verdict = await policy.check_answer(req.question, answer, sources, embed)
        self.count(verdict)
        turn.add(verdict)
        return verdict

    async def answer(self, req: ChatRequest, rid: str | None, turn: Turn) -> dict[str, Any]:
        prep = await self.start(req, turn)
        withheld = None
        if turn.rejected is not None:
            body = self.policy_fallback(prep, rid, turn.rejected)
        else:
            body = await self._answer(req, prep, rid)
            if body["status"] == "ok":
                cited = [c["chunk_id"] for c in body["citations"]]
                verdict = await self.check_answer(req, prep, body["answer"], cited, turn)
                if verdict.rejected is not None:
                    withheld = verdict.text
                    body = self.policy_fallback(prep, rid, verdict.rejected)
                else:
                    body["answer"] = verdict.text
                    if body["cache"] == "miss":  # the model's own answer, as the user got it
                        await self.remember(prep, body)
        body["warnings"] = turn.warnings if body["status"] == "ok" else []
        await turn.record(
            status=body["status"],
            reason_code=body["reason_code"],
            answer=body["answer"],
            citations=body["citations"],
            withheld=withheld,
            model=body["model"],
            provider=body["provider"],
            usage=body.pop("_usage", None),
            cache=body["cache"],
            rule=body["policy_rule"],
            message=body["message"],
        )
        return body

    def policy_fallback(self, prep: Prepared, rid: str | None, finding: Finding) -> dict[str, Any]:
        return self.fallback_body(prep, ReasonCode.POLICY_REJECTED, rid, finding.detail, rule=finding.rule)

    async def _answer(self, req: ChatRequest, prep: Prepared, rid: str | None) -> dict[str, Any]:
        """The answer before governance: cached, the model's (checked and cited), or a fallback."""
        if prep.cached is not None:
            return {
                **prep.cached,
                "status": "ok",
                "reason_code": None,
                "message": None,
                "cache": "hit",
                "request_id": rid,
                "answered_by": "model",
                "policy_rule": None,
            }
        if prep.no_answer is not None:
            return self.fallback_body(prep, prep.no_answer, rid)
        started = time.perf_counter()
        try:
            resp = await self.gateway.generate(self.generate_request(req, prep, stream=False))
            answered_by = answered_by_of(resp.status, resp.answered_by)
            if answered_by is None or resp.answer is None:
                raise UpstreamError(
                    resp.reason_code or ReasonCode.PROVIDER_ERROR, resp.message or "The model failed."
                )
            citations = self.check_citations(prep, resp.citations) if req.citations_required else []
            if req.citations_required:
                self.check_support(prep, resp.answer, citations)
        except UpstreamError as exc:
            log.info("chat_fallback", reason_code=exc.reason_code.value, detail=exc.message)
            return self.fallback_body(prep, exc.reason_code, rid, getattr(exc, "detail", None))
        finally:
            self.metrics.gateway_latency.labels("false").observe(time.perf_counter() - started)
        by_fallback = answered_by == "fallback_provider"
        return {
            "answer": resp.answer,
            "citations": [c.model_dump(mode="json") for c in citations],
            "sources": prep.sources,
            "status": "ok",
            "reason_code": resp.reason_code.value if by_fallback and resp.reason_code else None,
            "message": fallback_provider_message(resp.provider, resp.reason_code) if by_fallback else None,
            # Not cached when a fallback provider answered: the model answers the next asker, once it is back.
            "cache": "off" if by_fallback else "miss",
            "model": resp.model,
            "provider": resp.provider,
            "request_id": rid,
            "answered_by": answered_by,
            "policy_rule": None,
            "_usage": resp.usage.model_dump(),
        }

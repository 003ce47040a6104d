"""What is found before the model is asked: a cached answer, or the search results and the evidence gate.

The gate (evidence.py): no relevant chunk, or no sentence in them close enough to the question, is NO_CONTEXT
and the model is not asked; middling evidence (between QS_MIN_EVIDENCE and QS_ANSWER_EVIDENCE) shows the
closest passages instead of an answer (WEAK_EVIDENCE), and so does weak evidence from a chunk that is close to
the question as a whole (QS_PASSAGES_SIMILARITY); otherwise the best sentences become the context sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from cairn_core import ContextChunk, ReasonCode

from cairn_query.chat.cache import Cache, cache_key
from cairn_query.chat.evidence import select_evidence
from cairn_query.chat.followup import Followups
from cairn_query.chat.prompt_budget import fit_chunks
from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.retrieval import Retriever, SearchOutcome
from cairn_query.governance.access import Access
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import ChatRequest
from cairn_query.settings import QuerySettings
from cairn_query.store import Store

log = structlog.get_logger("chat")


@dataclass
class Plan:
    """What was found before the model is asked: a cached answer, or the retrieval and the evidence."""

    key: str
    cached: dict[str, Any] | None
    outcome: SearchOutcome | None = None
    context: list[ContextChunk] = field(default_factory=list)
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
        """What the user is shown beside the answer (nothing when nothing relevant was found)."""
        if self.cached is not None:
            return list(self.cached["sources"])
        if self.passages:
            return self.passages
        if self.no_answer is ReasonCode.NO_CONTEXT:
            return []
        # Only relevant chunks: a vector hit far below the similarity floor is noise to the reader.
        return [h.public() for h in (self.outcome.relevant if self.outcome else [])]

    @property
    def retrieved(self) -> list[str]:
        if self.cached is not None:
            return [s["chunk_id"] for s in self.cached["sources"]]
        return [h.chunk.chunk_id for h in (self.outcome.hits if self.outcome else [])]

    def texts_of(self, ids: list[str]) -> list[str] | None:
        """The whole retrieved chunks `ids` (not only the sentences sent), title first; None from the cache."""
        if self.outcome is None:
            return None
        chunks = {h.chunk.chunk_id: h.chunk for h in self.outcome.hits}
        return [f"{c.heading or ''}\n{c.text}" for i in ids if (c := chunks.get(i)) is not None]


@dataclass
class Planner:
    settings: QuerySettings
    store: Store
    retriever: Retriever
    gateway: GatewayClient
    cache: Cache
    metrics: QueryMetrics

    def __post_init__(self) -> None:
        self.followups = Followups(self.settings, self.gateway)

    async def plan(self, req: ChatRequest, access: Access) -> Plan:
        """The cached answer, or the search results and the evidence the model would answer from."""
        # The version is read before retrieval: an ingest racing with this request makes the key stale, never
        # the cached answer newer than its key.
        version = await asyncio.to_thread(self.store.version)
        model = req.model or self.settings.model
        top_k = req.top_k or self.settings.top_k
        conv = [(m.role, m.content) for m in req.conversation()]
        # Keyed by what the asker may read too: an answer is never served to someone with other permissions.
        key = cache_key(conv, req.collection, req.filters, top_k, model, version, access.scope_key)
        cached = await self.cache.get(key) if self.settings.cache_size and req.cache else None
        self.metrics.cache.labels("hit" if cached else "miss").inc()
        if cached is not None:
            return Plan(key, cached)
        # A follow-up ("and for Corvale?") is searched as a standalone question (followup.py).
        question = await self.followups.standalone(req.conversation())
        outcome = await self.retriever.search(
            question, top_k, req.collection, req.filters, access.collections
        )
        if not self.settings.evidence_sentences:
            return Plan(key, None, outcome, fit_chunks(outcome.relevant, self.settings.context_tokens))
        evidence = await select_evidence(self.settings, self.store, self.gateway, question, outcome)
        answerable = evidence.answerable(self.settings.min_evidence)
        strong = answerable and evidence.strong(
            self.settings.min_evidence, max(self.settings.min_evidence, self.settings.answer_evidence)
        )
        # Refused, but the documents are about it: "I could not find anything" would be untrue.
        near = not answerable and evidence.about_it(self.settings.passages_similarity)
        log.info(
            "evidence",
            sentences=len(evidence.sentences),
            match=None if evidence.match is None else round(evidence.match, 4),
            answerable=answerable,
            strong=strong,
            near=near,
        )
        if (answerable and not strong) or near:
            return Plan(key, None, outcome, [], passages=evidence.passages())
        return Plan(key, None, outcome, evidence.context() if answerable else [])

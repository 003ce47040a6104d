"""Hybrid retrieval: BM25 (FTS5) and embedding similarity, fused by reciprocal rank.

RRF needs no score calibration between the two lists: each chunk scores Σ w/(k + rank) over the lists it is
in, with w = `QS_BM25_WEIGHT` for BM25 and 1 for the vectors. A chunk counts as *relevant* (worth sending to the model) when BM25 matched one of the query's content
words or its cosine similarity reaches `QS_MIN_SIMILARITY`; a question with no relevant chunk is NO_CONTEXT.
When the gateway cannot embed the query, the search is BM25 only instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from cairn_core import UpstreamError

from cairn_query.clients.gateway import GatewayClient
from cairn_query.metrics import QueryMetrics
from cairn_query.settings import QuerySettings
from cairn_query.store import ChunkRow, Store

log = structlog.get_logger("retrieval")


@dataclass
class Hit:
    chunk: ChunkRow
    score: float
    bm25_rank: int | None
    vector_rank: int | None
    similarity: float | None
    relevant: bool

    def public(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.chunk_id,
            "document_id": c.document_id,
            "title": c.title,
            "section": c.section,
            "page": c.page,
            "url": c.url,
            "score": round(self.score, 6),
            "bm25_rank": self.bm25_rank,
            "vector_rank": self.vector_rank,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "text": c.text,
            "snippet": snippet(c.text),
            "metadata": c.metadata,
            "collection": c.collection,
        }


@dataclass
class SearchOutcome:
    hits: list[Hit]
    mode: str  # "hybrid" | "bm25"
    took_ms: float
    query_vector: np.ndarray | None = None
    embed_model: str | None = None
    degraded: list[str] = field(default_factory=list)

    @property
    def relevant(self) -> list[Hit]:
        return [h for h in self.hits if h.relevant]


def snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit] + "…"


class Retriever:
    def __init__(
        self, settings: QuerySettings, store: Store, gateway: GatewayClient, metrics: QueryMetrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.metrics = metrics

    async def embed_query(self, text: str) -> tuple[np.ndarray | None, str | None]:
        try:
            vectors, model = await self.gateway.embed([text])
        except UpstreamError as exc:
            log.warning("query_embedding_failed", reason_code=exc.reason_code.value)
            return None, None
        return np.asarray(vectors[0], dtype=np.float32), model

    async def search(
        self,
        query: str,
        top_k: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None,
    ) -> SearchOutcome:
        """`collections`: what the caller may read (governance/access.py), None for everything; required, so
        that no caller can leave it out by accident."""
        started = time.perf_counter()
        vector, model = await self.embed_query(query)
        outcome = await asyncio.to_thread(
            self._search_sync, query, vector, model, top_k, collection, filters, collections
        )
        outcome.took_ms = round((time.perf_counter() - started) * 1000, 3)
        self.metrics.retrieval_latency.labels(outcome.mode).observe(outcome.took_ms / 1000)
        return outcome

    def _search_sync(
        self,
        query: str,
        vector: np.ndarray | None,
        model: str | None,
        top_k: int,
        collection: str | None,
        filters: dict[str, Any],
        collections: list[str] | None,
    ) -> SearchOutcome:
        n = max(self.settings.candidates, top_k)
        bm25 = self.store.bm25(query, n, collection, filters, collections)
        dense: list[tuple[int, float]] | None = None
        if vector is not None and model is not None:
            dense = self.store.vector_search(vector.tolist(), model, n, collection, filters, collections)
            if dense is None:
                log.warning("embedding_model_mismatch", query_model=model, store=self.store.embed_model())
        k = self.settings.rrf_k
        scores: dict[int, float] = {}
        bm25_rank = {rowid: i + 1 for i, rowid in enumerate(bm25)}
        vec_rank = {rowid: i + 1 for i, (rowid, _) in enumerate(dense or [])}
        sims = dict(dense or [])
        for ranks, weight in ((bm25_rank, self.settings.bm25_weight), (vec_rank, 1.0)):
            for rowid, rank in ranks.items():
                scores[rowid] = scores.get(rowid, 0.0) + weight / (k + rank)
        top = sorted(scores, key=lambda r: (-scores[r], r))[:top_k]
        rows = self.store.chunks_by_rowid(top, collections)
        hits = []
        for rowid in top:
            if rowid not in rows:  # deleted between the two reads
                continue
            sim = sims.get(rowid)
            relevant = rowid in bm25_rank or (sim is not None and sim >= self.settings.min_similarity)
            hits.append(
                Hit(rows[rowid], scores[rowid], bm25_rank.get(rowid), vec_rank.get(rowid), sim, relevant)
            )
        mode = "hybrid" if dense is not None else "bm25"
        return SearchOutcome(hits, mode, 0.0, vector if dense is not None else None, model)

"""`POST /v1/hybrid-query`: the grounded answer plus one score for how much to trust it.

    score = 0.5 · R + 0.5 · G
    R = mean over cited chunks of max(0, cos(embed(query),  embed(chunk)))   retrieval relevance
    G = mean over cited chunks of max(0, cos(embed(answer), embed(chunk)))   grounding of the answer

Without citations (fallback, NO_CONTEXT) the top 3 sources stand in for the cited chunks and G = 0. Without
embeddings (gateway down) both are 0. Chunk vectors come from the store, so only the query and the answer are
embedded (one call).
"""

from __future__ import annotations

import asyncio

import numpy as np
from cairn_core import UpstreamError

from cairn_query.chat.pipeline import ChatPipeline
from cairn_query.chat.render import render_json
from cairn_query.chat.turn import Turn
from cairn_query.schemas import ChatRequest, HybridResponse


def _mean_cos(vector: np.ndarray, chunks: list[np.ndarray]) -> float:
    if not chunks:
        return 0.0
    v = vector / (np.linalg.norm(vector) or 1.0)
    return float(np.mean([max(0.0, float(c @ v)) for c in chunks]))


async def hybrid_query(chat: ChatPipeline, req: ChatRequest, turn: Turn) -> HybridResponse:
    result = await render_json(chat.run(req, turn, stream=False), turn.request_id)
    ok = result.status == "ok"
    cited = [c.chunk_id for c in result.citations] or [s.chunk_id for s in result.sources[:3]]
    relevance = grounding = 0.0
    if cited:
        try:
            texts = [req.question, result.answer] if ok else [req.question]
            vectors, model = await chat.gateway.embed(texts)
        except UpstreamError:
            vectors = []
        stored = await asyncio.to_thread(chat.store.vectors_of, cited)
        store_model, _ = await asyncio.to_thread(chat.store.embed_model)
        chunks = [stored[c][0] for c in cited if c in stored]  # the whole chunk's vector
        if vectors and model == store_model:
            relevance = _mean_cos(np.asarray(vectors[0], dtype=np.float32), chunks)
            if ok:
                grounding = _mean_cos(np.asarray(vectors[1], dtype=np.float32), chunks)
    return HybridResponse(
        text=result.answer,
        score=round(0.5 * relevance + 0.5 * grounding, 4),
        relevance=round(relevance, 4),
        grounding=round(grounding, 4),
        sources=result.sources,
        citations=result.citations,
        status=result.status,
        reason_code=result.reason_code,
        policy_rule=result.policy_rule,
        warnings=result.warnings,
        request_id=turn.request_id,
    )

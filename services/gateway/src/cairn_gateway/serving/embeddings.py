"""`/v1/embed` (Cairn's shape) and `/v1/embeddings` (OpenAI's): the same embedder, two answers."""

from __future__ import annotations

import base64

import numpy as np
from cairn_core import CairnError, JSONResponse, ReasonCode, cancel_on_disconnect
from starlette.requests import Request
from starlette.responses import Response

from ..engine import Engine
from ..protocol.embeddings import EmbedRequest


async def embed(request: Request, body: EmbedRequest) -> Response:
    vectors, tokens, model = await _embed(request, body)
    dims = len(vectors[0]) if vectors else 0
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse({"embeddings": vectors, "model": model, "dims": dims, "usage": usage})


async def embeddings(request: Request, body: EmbedRequest) -> Response:
    vectors, tokens, model = await _embed(request, body)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse({"object": "list", "model": model, "data": data, "usage": usage})


def _encode(vector: list[float], encoding: str | None) -> list[float] | str:
    # The openai SDK asks for base64 by default: little-endian float32, as OpenAI sends it.
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


async def _embed(request: Request, body: EmbedRequest) -> tuple[list[list[float]], int, str]:
    engine: Engine = request.app.state.engine
    registry = engine.registry
    texts = body.input if isinstance(body.input, list) else [body.input]
    limit = registry.settings.max_embed_inputs
    if len(texts) > limit:
        raise CairnError(ReasonCode.BAD_REQUEST, f"At most {limit} inputs per embedding request.")
    if registry.embedder is None:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE, "No embedding model is configured (LLM_EMBED_PROVIDER)."
        )
    vectors, tokens = await cancel_on_disconnect(request, registry.embedder.embed(texts))
    registry.metrics.embeddings.labels(registry.embedder.model).inc(len(texts))
    registry.metrics.embed_inputs.labels(registry.embedder.model).observe(len(texts))
    return vectors, tokens, registry.embedder.model

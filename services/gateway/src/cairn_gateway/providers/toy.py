"""The deterministic toy provider: a product feature for demos, CI and load tests, not a test double.

Same prompt and seed → same text, with no model at all. With a JSON schema (grounded answers) it answers in
the citation schema from the given chunks, so the whole RAG path runs without a model. `LLM_TOY_DELAY_MS`
spaces the tokens out to look like a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from cairn_core import StopReason, Usage, split_sentences

from ..in_process.manifest import shipped
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ProviderResult

_VOCAB = [
    "the",
    "a",
    "cairn",
    "marks",
    "the",
    "path",
    "over",
    "stone",
    "and",
    "moss",
    "while",
    "careful",
    "hikers",
    "read",
    "each",
    "sign",
    "before",
    "the",
    "ridge",
    "where",
    "wind",
    "and",
    "light",
    "meet",
    "quiet",
    "water",
    "under",
    "open",
    "sky",
]
_WORD = re.compile(r"\w+", re.UNICODE)


def _seed(req: ProviderRequest) -> int:
    key = json.dumps([[m.role, m.content] for m in req.messages], ensure_ascii=False)
    digest = hashlib.sha256(f"{key}|{req.seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _first_sentence(text: str) -> str:
    # Whole, and cut where QS's support check and every other quote cut it: a quote is never a fragment.
    return next(iter(split_sentences(text)), text.strip())


def _grounded_text(req: ProviderRequest) -> str:
    chunks = req.context
    if not chunks:
        return json.dumps({"answer": "I have no sources to answer from.", "citations": []})
    question = next((m.content for m in reversed(req.messages) if m.role == "user"), "")
    q_words = {w.lower() for w in _WORD.findall(question) if len(w) > 3}
    # Cite the chunk sharing most words with the question (ties: the earliest, i.e. best ranked).
    best = max(chunks, key=lambda c: len(q_words & {w.lower() for w in _WORD.findall(c.text)}))
    answer = f"{_first_sentence(best.text)} [{best.chunk_id}]"
    return json.dumps({"answer": answer, "citations": [{"chunk_id": best.chunk_id}]}, ensure_ascii=False)


def _plain_tokens(req: ProviderRequest) -> list[str]:
    rng = random.Random(_seed(req))
    question = req.messages[-1].content.strip().replace("\n", " ")
    head = f"Toy answer to: {question[:80]}."
    words = head.split() + [rng.choice(_VOCAB) for _ in range(rng.randint(8, 24))]
    return [w + " " for w in words[:-1]] + [words[-1] + "."]


def _tokens(req: ProviderRequest) -> list[str]:
    if req.json_schema is not None:
        text = _grounded_text(req)
        # JSON is streamed in small pieces, like a model would, so stream parsers get exercised.
        return [text[i : i + 6] for i in range(0, len(text), 6)]
    return _plain_tokens(req)


def _count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class ToyProvider:
    name = "toy"

    def __init__(
        self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.model = spec.model or "toy"
        self.delay_s = float(spec.params.get("delay_ms", settings.toy_delay_ms)) / 1000

    async def start(self) -> None:
        return None

    def _plan(self, req: ProviderRequest) -> tuple[list[str], StopReason]:
        tokens = _tokens(req)
        finish = StopReason.EOS
        if req.json_schema is None and len(tokens) > req.max_tokens:
            tokens, finish = tokens[: req.max_tokens], StopReason.LENGTH
        text = "".join(tokens)
        for stop in req.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], StopReason.STOP
        # Re-split the (possibly cut) text on the original token boundaries.
        out, used = [], 0
        for tok in tokens:
            if used >= len(text):
                break
            piece = text[used : used + len(tok)]
            out.append(piece)
            used += len(piece)
        return out, finish

    def _usage(self, req: ProviderRequest, n: int) -> Usage:
        return Usage(prompt_tokens=sum(_count_tokens(m.content) for m in req.messages), completion_tokens=n)

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        tokens, finish = self._plan(req)
        if self.delay_s:
            await asyncio.sleep(self.delay_s * len(tokens))
        return ProviderResult("".join(tokens), finish, self._usage(req, len(tokens)))

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        tokens, finish = self._plan(req)
        for tok in tokens:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield ProviderChunk(text=tok)
        yield ProviderChunk(finish_reason=finish, usage=self._usage(req, len(tokens)))

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"state": "loaded", "memory_mb": 0}


class ToyEmbedder:
    """Feature-hashed bag of words, L2-normalised: lexical similarity with no model, deterministic."""

    name = "toy"
    model = "toy-hash-256"
    dims = 256

    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.manifest = shipped("toy-hash-256")

    async def start(self) -> None:
        return None

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dims
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vec[h % self.dims] += 1.0 if (h >> 32) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return [self._vector(t) for t in texts], sum(_count_tokens(t) for t in texts)

    async def aclose(self) -> None:
        return None

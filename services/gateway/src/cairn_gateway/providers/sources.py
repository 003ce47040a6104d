"""The `sources` provider: the last link of the default fallback chain, an answer built from the sources alone.

When every model has failed (not loaded yet, down, busy, out of time), a grounded request still gets an answer:
the first sentences of the best-ranked source, quoted word for word and cited. It invents nothing, so it
passes every citation and support check, and the response says who answered (`answered_by:
"fallback_provider"`, `provider: "sources"`), so the page can state that no model wrote it. A request without
sources (plain chat) has nothing to quote: it fails with the reason, and the caller sees the original error.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from cairn_core import ReasonCode, StopReason, Usage, join_sentences, split_sentences

from ..errors import ProviderError
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ProviderResult

_HEADING_MARK = re.compile(r"(?m)^\s*#+\s*")
QUOTE_SENTENCES = 2
QUOTE_CHARS = 500


def quote(text: str) -> str:
    """The first sentences of `text`, whole, up to QUOTE_CHARS (at least one sentence); Markdown headings are
    left out, as they are labels, not statements."""
    lines = text.splitlines()
    body = [line for line in lines if not line.lstrip().startswith("#")] if len(lines) > 1 else lines
    # A heading glued to its first sentence (as sentence splitting leaves it) keeps its words, not its marks.
    text = _HEADING_MARK.sub("", "\n".join(body or lines))
    out: list[str] = []
    for sentence in split_sentences(text)[:QUOTE_SENTENCES]:
        if out and len(" ".join([*out, sentence])) > QUOTE_CHARS:
            break
        out.append(sentence)
    return join_sentences(out) or text.strip()[:QUOTE_CHARS]


class SourcesProvider:
    name = "sources"

    def __init__(
        self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession | None = None
    ) -> None:
        self.model = "sources"

    async def start(self) -> None:
        return None

    def _answer(self, req: ProviderRequest) -> str:
        if req.json_schema is None or not req.context:
            raise ProviderError(
                ReasonCode.PROVIDER_UNAVAILABLE, "No model answered, and the request has no sources to quote."
            )
        best = req.context[0]  # the caller ranks its sources best first (QS does)
        return json.dumps({"answer": quote(best.text), "citations": [{"chunk_id": best.chunk_id}]})

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        text = self._answer(req)
        return ProviderResult(text, StopReason.EOS, Usage(completion_tokens=0))

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        yield ProviderChunk(text=self._answer(req))
        yield ProviderChunk(finish_reason=StopReason.EOS, usage=Usage())

    async def health(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"state": "loaded", "memory_mb": 0, "note": "quotes the best-ranked source; no model"}

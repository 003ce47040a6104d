"""The evidence sent to the model: the few sentences of the retrieved chunks that bear on the question.

Whole chunks cost a small model about 1,100 prompt tokens per question, most of them about something else, and
a 270M model copies a neighbouring number as readily as the right one. So each relevant chunk is split into
sentences, and every sentence is scored against the question: the cosine similarity of its vector (embedded
at ingest with its chunk's title in front, which says whose policy it is; documents.vector_texts) plus a
bonus for the question's content words that it holds, each weighted by its rarity among the candidates. Only sentences without a stored vector are embedded
now.
The best `QS_EVIDENCE_SENTENCES` go to the model, best first, each under its chunk's id, so citations still
name chunks; a lead-in ("… is as follows:") brings the sentence it introduces along.

A sentence whose chunk is about someone else is no evidence: when the question names something (a company,
a product, a place) that the chunk does not mention, and the chunk names something the question does not,
the chunk answers for another party ("What mileage rate does Fernhill pay?" against Brindlewick's policy),
and its sentences are dropped.

Whether the documents answer at all is judged on the best sentence (with the next best of its chunk, as an
extractive answer quotes them) and the question, with every name taken out of both: "What is the population of Lyon?" and "The Lyon office is open from 7:30" are close only
through "Lyon", and far apart without it, while a paraphrase stays close to the sentence that answers it.
Below `QS_MIN_EVIDENCE` QS says so (NO_CONTEXT) instead of asking the model to make something up.
Thresholds are calibrated on the shipped evaluation set (docs/eval.md).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from cairn_core import (
    ContextChunk,
    UpstreamError,
    content_words,
    join_sentences,
    names_in,
    numbers,
    split_sentences,
    without_names,
    word_stems,
)

from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.retrieval import Hit, SearchOutcome
from cairn_query.settings import QuerySettings
from cairn_query.store import Store

log = structlog.get_logger("evidence")


@dataclass(frozen=True, slots=True)
class Sentence:
    hit: Hit
    text: str
    position: int  # index of the sentence within its chunk
    similarity: float | None
    lexical: float
    score: float


@dataclass
class Evidence:
    sentences: list[Sentence]  # best first
    # How close the best sentence is to the question with the names taken out; None without embeddings.
    match: float | None = None
    # The quote (with its chunk's heading) holds every content word and number of the question.
    covered: bool = False

    def answerable(self, threshold: float) -> bool:
        if not self.sentences:
            return False
        # Without embeddings there is nothing calibrated to judge by; BM25 relevance already holds, and the
        # support check still guards the answer.
        return self.match is None or self.match >= threshold

    def strong(self, floor: float, threshold: float) -> bool:
        """Strong enough to be shown as the answer: a match from `threshold` up, or from `floor` up when the
        quote holds every word the question asks with. The name-less match undersells a quote whose words
        are the question's own names ("Does uvicorn support WebSockets?" / "Uvicorn currently supports
        HTTP/1.1, HTTP/2 and WebSockets.": 0.37). Chosen on the tune halves of the three evaluation sets; with
        Gemma, right answers went up on five halves of six and one wrong answer was added ("How many
        employees does Corvale Foods have?": every word is there, the quantity is not; docs/eval.md)."""
        return self.answerable(threshold) or (self.covered and self.answerable(floor))

    def about_it(self, similarity: float) -> bool:
        """A chunk the best sentences come from is this close to the question (its vector's cosine): the
        documents are about what is asked, even where no sentence of theirs was judged to answer it."""
        return any(s.hit.similarity is not None and s.hit.similarity >= similarity for s in self.sentences)

    def passages(self, limit: int = 3) -> list[dict[str, Any]]:
        """The closest passages, for an answer that is not given (WEAK_EVIDENCE): each chunk holding one of
        the best sentences, best first, with those sentences as its snippet, which is what the page shows."""
        out: dict[str, dict[str, Any]] = {}
        for s in self.sentences:
            chunk_id = s.hit.chunk.chunk_id
            if chunk_id in out:
                out[chunk_id]["snippet"] += " " + s.text
            elif len(out) < limit:
                out[chunk_id] = {**s.hit.public(), "snippet": s.text}
        return list(out.values())

    def context(self) -> list[ContextChunk]:
        """The chosen sentences as context chunks, best first; sentences of one chunk go under one id, in
        the order of their scores (the gateway numbers them in this order)."""
        grouped: dict[str, list[Sentence]] = {}
        for s in self.sentences:
            grouped.setdefault(s.hit.chunk.chunk_id, []).append(s)
        return [
            ContextChunk(
                chunk_id=chunk_id,
                title=group[0].hit.chunk.heading,
                url=group[0].hit.chunk.url,
                # The gateway splits this text into sentences again: a grammar line must stay one.
                text=join_sentences(s.text for s in group),
            )
            for chunk_id, group in grouped.items()
        ]


def word_weights(question: set[str], sentences: list[set[str]]) -> dict[str, float]:
    """Each content word of the question weighted by how rare it is among the candidate sentences (an IDF
    over the candidates): "continue" in all of them says less about which one answers than "finally" in
    two. Measured on the tune halves of both evaluation sets (docs/eval.md): the right sentence first more
    often on both, no set worse."""
    n = len(sentences)
    df = dict.fromkeys(question, 0)
    for words in sentences:
        for w in question & words:
            df[w] += 1
    return {w: math.log((n + 1) / (df[w] + 0.5)) for w in question}


def lexical(weights: dict[str, float], words: set[str]) -> float:
    """Weighted share of the question's content words that a sentence (its words) holds."""
    total = sum(weights.values())
    return sum(weights[w] for w in weights.keys() & words) / total if total else 0.0


def about_someone_else(question: str, hit: Hit) -> bool:
    """The question and the chunk each name something the other does not: another party's document. Names
    are looked up among all words, so a one-letter name ("the C implementation") is found where it is."""
    text = f"{hit.chunk.heading or ''}\n{hit.chunk.text}"
    asked = names_in(question, first_words=False)
    return bool(asked - word_stems(text)) and bool(names_in(text) - word_stems(question))


def labelled(hit: Hit, sentence: str) -> str:
    return f"{hit.chunk.heading}: {sentence}" if hit.chunk.heading else sentence


async def _sentence_vectors(
    store: Store, gateway: GatewayClient, outcome: SearchOutcome, candidates: list[tuple[Hit, int, str]]
) -> np.ndarray | None:
    """One row per candidate: the stored sentence vector where there is one, else embedded now."""
    stored = await asyncio.to_thread(store.vectors_of, [h.chunk.chunk_id for h, _, _ in candidates])
    store_model, _ = await asyncio.to_thread(store.embed_model)
    rows: list[np.ndarray | None] = []
    for hit, i, _ in candidates:
        block = stored.get(hit.chunk.chunk_id) if store_model == outcome.embed_model else None
        # Row 0 is the whole chunk, then its first sentences (as many as the ingest caps allowed); a chunk of
        # one sentence has no other row, and that row is the sentence.
        n = len(split_sentences(hit.chunk.text))
        if block is not None and 1 < len(block) <= n + 1 and i + 1 < len(block):
            rows.append(block[i + 1])
        elif block is not None and n == 1 and len(block) == 1:
            rows.append(block[0])
        else:
            rows.append(None)
    missing = [k for k, r in enumerate(rows) if r is None]
    if missing:
        try:
            vectors, model = await gateway.embed(
                [labelled(candidates[k][0], candidates[k][2]) for k in missing]
            )
        except UpstreamError as exc:  # lexical scores only: slower to be right, never down
            log.warning("evidence_embedding_failed", reason_code=exc.reason_code.value)
            return None
        if model != outcome.embed_model:
            return None
        for k, v in zip(missing, vectors, strict=True):
            rows[k] = np.asarray(v, dtype=np.float32)
    m = np.vstack([r for r in rows if r is not None])
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


async def select_evidence(
    settings: QuerySettings,
    store: Store,
    gateway: GatewayClient,
    question: str,
    outcome: SearchOutcome,
) -> Evidence:
    candidates: list[tuple[Hit, int, str]] = []
    seen: set[str] = set()
    for hit in outcome.relevant:
        if about_someone_else(question, hit):
            continue
        for i, sentence in enumerate(split_sentences(hit.chunk.text)):
            key = " ".join(sentence.lower().split())
            if key not in seen:  # chunks overlap, so neighbours share sentences
                seen.add(key)
                candidates.append((hit, i, sentence))
    if not candidates:
        return Evidence([])
    words = [content_words(labelled(hit, sentence)) for hit, _, sentence in candidates]
    weights = word_weights(content_words(question), words)
    sims: list[float | None] = [None] * len(candidates)
    if outcome.query_vector is not None:
        m = await _sentence_vectors(store, gateway, outcome, candidates)
        if m is not None:
            q = outcome.query_vector / (np.linalg.norm(outcome.query_vector) or 1.0)
            sims = [float(x) for x in m @ q]
    scored = []
    for (hit, i, sentence), sim, held in zip(candidates, sims, words, strict=True):
        lex = lexical(weights, held)
        score = (sim if sim is not None else 0.0) + settings.evidence_lexical_weight * lex
        scored.append(Sentence(hit, sentence, i, sim, lex, score))
    scored.sort(key=lambda s: -s.score)
    chosen = with_what_follows(scored, settings.evidence_sentences)
    match = None
    if sims[0] is not None:
        # Judged on what an extractive answer would quote.
        match = await _match_without_names(gateway, question, _quoted(chosen))
    return Evidence(chosen, match, holds_every_word(question, chosen))


# A numbered item's own "1." is a sentence of its own (split_sentences); a lead-in introduces the item's text.
_ITEM_NUMBER = re.compile(r"\d+[.)]")


def introduces(sentence: str) -> bool:
    """A lead-in ("The typical usage to inspect a crashed program is:", "Example:") only says that what follows
    answers: quoted alone it is a cut-off fragment."""
    return sentence.rstrip().endswith(":")


def follower(lead: Sentence, scored: list[Sentence]) -> Sentence | None:
    """The sentence a lead-in introduces: the next one of its chunk, past a numbered item's bare number."""
    sentences = split_sentences(lead.hit.chunk.text)
    j = lead.position + 1
    while j < len(sentences) and _ITEM_NUMBER.fullmatch(sentences[j]):
        j += 1
    if j >= len(sentences):
        return None
    for s in scored:
        if s.hit.chunk.chunk_id == lead.hit.chunk.chunk_id and s.position == j:
            return s
    return Sentence(lead.hit, sentences[j], j, None, 0.0, lead.score)


def with_what_follows(scored: list[Sentence], limit: int) -> list[Sentence]:
    """The best `limit` sentences, each lead-in followed by the sentence it introduces, so that the gate judges,
    the model reads and the answer quotes both. The follower comes on top of the limit: taking another's
    place would change which sentences an answer quotes beside its own."""
    out: list[Sentence] = []
    taken: set[str] = set()
    for s in scored[:limit]:
        key = " ".join(s.text.lower().split())
        if key in taken:
            continue
        out.append(s)
        taken.add(key)
        f = follower(s, scored) if introduces(s.text) else None
        if f is not None and (fkey := " ".join(f.text.lower().split())) not in taken:
            out.append(f)
            taken.add(fkey)
    return out


def holds_every_word(question: str, chosen: list[Sentence]) -> bool:
    """The quote, with its chunk's heading, holds every content word and number of the question ("Does HTTPX
    support HTTP/3?" is not answered by "HTTP/1.1 and HTTP/2 support.")."""
    asked, quote = content_words(question), labelled(chosen[0].hit, _quoted(chosen))
    return bool(asked) and asked <= content_words(quote) and numbers(question) <= numbers(quote)


def _quoted(chosen: list[Sentence]) -> str:
    """What an extractive answer quotes: the best sentence and the next best of its chunk."""
    same_chunk = [s for s in chosen[1:] if s.hit.chunk.chunk_id == chosen[0].hit.chunk.chunk_id]
    return " ".join(s.text for s in [chosen[0], *same_chunk[:1]])


def nameless(question: str, sentence: str) -> tuple[str, str]:
    """The question and the sentence with every name taken out of both; as written when that leaves either
    without a content word. A README's "SOCKS Proxy Support" is names only: emptied, it could not be
    embedded, and the gate, left without a match, let every quote through (`answerable`)."""
    names = names_in(question, first_words=False) | names_in(sentence)
    q, s = without_names(question, names), without_names(sentence, names)
    return (q, s) if content_words(q) and content_words(s) else (question, sentence)


async def _match_without_names(gateway: GatewayClient, question: str, sentence: str) -> float | None:
    try:
        vectors, _ = await gateway.embed(list(nameless(question, sentence)))
    except UpstreamError as exc:
        log.warning("evidence_embedding_failed", reason_code=exc.reason_code.value)
        return None
    q, s = (np.asarray(v, dtype=np.float32) for v in vectors)
    return float(q @ s / ((np.linalg.norm(q) * np.linalg.norm(s)) or 1.0))

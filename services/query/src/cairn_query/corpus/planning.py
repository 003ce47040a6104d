"""What ingest embeds for each chunk, within a document's caps, and how a document travels from the chunker
through the embedder to the store (`Prepared`). Used by documents.py at ingest, on a retry and on a reembed,
by ingest_jobs.py for batches, and by the benchmarks (`document_texts`), so all embed the same texts.
"""

from __future__ import annotations

from dataclasses import dataclass

from cairn_core import split_sentences

from cairn_query.corpus.chunking import Piece, chunk_sections
from cairn_query.corpus.normalise import clean_plain, sections
from cairn_query.schemas import DocumentIn
from cairn_query.settings import QuerySettings
from cairn_query.store import NewDocument, heading


@dataclass
class Prepared:
    """A document checked and chunked, on its way to the embedder and the store."""

    source: DocumentIn
    new: NewDocument
    budget: Budget | None = None

    @property
    def capped(self) -> int:
        """Sentences that the caps left without a vector of their own."""
        return self.budget.capped if self.budget else 0


class Budget:
    """How many sentences of each chunk get a vector of their own, within one document's caps; chunks are
    planned in order, so a document gets the same vectors at ingest, on a retry and on a reembed."""

    def __init__(self, per_chunk: int, per_document: int) -> None:
        self.per_chunk = per_chunk
        self.left = per_document
        self.capped = 0  # sentences left without a vector of their own

    def take(self, sentences: int) -> int:
        if sentences <= 1:
            return 0  # a chunk of one sentence: the chunk's vector is the sentence's
        kept = min(sentences, self.per_chunk, self.left)
        self.left -= kept
        self.capped += sentences - kept
        return kept


def chunk_document(text: str, size: int, overlap: int) -> list[Piece]:
    """(section path, chunk text, page) of a document's text: normalised first (`normalise.py`), since a
    chunk's sentences are what answers quote, then chunked section by section."""
    return chunk_sections(sections(clean_plain(text)), size, overlap)


def planned_texts(chunks: list[tuple[str | None, str, Budget]]) -> list[list[str]]:
    """Per (title, text, its document's budget) chunk, in order: the texts embedded for it (`vector_texts`)."""
    texts = []
    for title, text, budget in chunks:
        sentences = split_sentences(text)
        texts.append(vector_texts(title, text, sentences[: budget.take(len(sentences))]))
    return texts


def document_texts(title: str | None, text: str, settings: QuerySettings) -> list[str]:
    """Every text that ingest embeds for one document, within its caps (what the benchmark embeds): its
    chunks as ingest cuts them, each under its title and section path."""
    budget = Budget(settings.max_sentence_vectors_per_chunk, settings.max_sentence_vectors_per_document)
    pieces = chunk_document(text, settings.chunk_chars, settings.chunk_overlap_chars)
    planned = planned_texts([(heading(title, p.section), p.text, budget) for p in pieces])
    return [t for group in planned for t in group]


def vector_texts(title: str | None, text: str, sentences: list[str]) -> list[str]:
    """What is embedded for a chunk: the chunk, then `sentences` (its first sentences, in `split_sentences`
    order, as many as the caps allow), all with the title in front (it names what the chunk is about: whose
    policy, which product). Retrieval scores a chunk by the best of them; evidence.py reuses the sentence
    vectors and embeds the sentences past them when it needs them."""
    head = [f"{title}\n{text}" if title else text]
    return head + [f"{title}: {s}" if title else s for s in sentences]

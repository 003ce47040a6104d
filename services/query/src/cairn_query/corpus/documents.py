"""Ingestion: validate, chunk, embed, and write a document in one transaction; idempotent by content hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from cairn_core import BadRequest, CairnError, ReasonCode, UpstreamError, split_sentences

from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.chunking import chunk_sections
from cairn_query.corpus.ingest_jobs import IngestJob, IngestJobs, ingest_many
from cairn_query.corpus.normalise import clean_plain, sections
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import DocumentIn
from cairn_query.settings import QuerySettings
from cairn_query.store import OPERATOR, NewDocument, NotOwner, Store, StoreFull, heading, may_write

log = structlog.get_logger("ingest")


def document_id(doc: DocumentIn) -> str:
    if doc.id:
        return doc.id
    # Same url (or same text when there is none) in the same collection → same id → idempotent re-ingest.
    key = doc.url or doc.text
    return hashlib.sha256(f"{doc.collection}\x00{key}".encode()).hexdigest()[:16]


class DocumentService:
    def __init__(
        self, settings: QuerySettings, store: Store, gateway: GatewayClient, metrics: QueryMetrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.metrics = metrics
        # Chunking a long document is CPU work of up to a second; it runs here, off the event loop and out of
        # the default pool that every store call waits in.
        self._cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="qs-chunking")
        self.jobs = IngestJobs()

    def close(self) -> None:
        self.jobs.close()
        self._cpu.shutdown(wait=False, cancel_futures=True)

    def start_batch(self, docs: list[DocumentIn], owner: str) -> IngestJob:
        """Ingest `docs` in the background (ingest_jobs.py); the job reports its progress."""
        return self.jobs.start(owner, len(docs), lambda job: ingest_many(self, docs, owner, job))

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn, *args)

    def _storage_full(self, exc: StoreFull) -> CairnError:
        return CairnError(
            ReasonCode.STORAGE_FULL,
            f"The store holds {exc.stored} chunks and this document needs {exc.adding} more; the limit is "
            f"{exc.limit} (QS_MAX_TOTAL_CHUNKS). Delete documents to make room.",
        )

    def _hash(self, doc: DocumentIn) -> str:
        s = self.settings
        key = json.dumps(
            [
                doc.collection,
                doc.title,
                doc.url,
                doc.metadata,
                doc.text,
                s.chunk_chars,
                s.chunk_overlap_chars,
            ],
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(key.encode()).hexdigest()

    async def ingest(self, doc: DocumentIn, owner: str = OPERATOR) -> tuple[dict[str, Any], bool, bool]:
        """Store `doc` for `owner`; returns (document, created, changed). Only the owner of an existing id
        may replace it (store.may_write), so a client cannot put its text under another's title."""
        prepared = await self.prepare(doc, owner)
        if isinstance(prepared, dict):  # unchanged: nothing embedded, nothing written
            return {**prepared, "sentences_without_vector": 0}, False, False
        await self.embed_documents([prepared])
        (stored, created), *_ = await self.store_documents([prepared])
        return {**stored, "sentences_without_vector": prepared.capped}, created, True

    async def prepare(self, doc: DocumentIn, owner: str) -> Prepared | dict[str, Any]:
        """Checked and chunked, not yet embedded; or the stored document when its content hash is unchanged."""
        limit = self.settings.max_document_chars
        if len(doc.text) > limit:
            raise BadRequest(
                f"The document has {len(doc.text)} characters of text; the limit is {limit}"
                " (QS_MAX_DOCUMENT_CHARS). Split it into several documents.",
                ReasonCode.PAYLOAD_TOO_LARGE,
            )
        doc_id = document_id(doc)
        digest = await self._off_loop(self._hash, doc)
        if await asyncio.to_thread(self.store.content_hash, doc_id) == digest:
            existing = await asyncio.to_thread(self.store.get_document, doc_id)
            if existing is not None:
                return existing
        exists, stored_owner = await asyncio.to_thread(self.store.owner_of, doc_id)
        if exists and not may_write(stored_owner, owner):  # before any work; upsert checks again
            raise not_owner(doc_id)
        pieces = await self._off_loop(
            chunk_document, doc.text, self.settings.chunk_chars, self.settings.chunk_overlap_chars
        )
        if not pieces:
            raise BadRequest("The document has no text to index.")
        try:
            # Before the embedding call, so a full store does not cost the gateway's time; upsert checks again.
            await asyncio.to_thread(
                self.store.check_room, doc_id, len(pieces), self.settings.max_total_chunks
            )
        except StoreFull as exc:
            raise self._storage_full(exc) from None
        new = NewDocument(
            doc_id,
            doc.collection,
            doc.title,
            doc.url,
            doc.metadata,
            doc.text,
            digest,
            [text for _, text in pieces],
            owner=owner,
            sections=[section for section, _ in pieces],
        )
        return Prepared(doc, new)

    async def embed_documents(self, docs: list[Prepared]) -> None:
        """The vectors of every chunk of `docs`, in as few gateway calls as it allows. When the gateway cannot
        embed, the documents are stored without vectors: searchable by BM25, marked `embedded: false` until
        `retry_embeddings` (or POST /admin/reembed) fills them in."""
        plans = []
        for p in docs:
            budget = self._budget()
            p.budget = budget
            plans += [
                (heading(p.new.title, s), text, budget)
                for s, text in zip(p.new.sections, p.new.chunks, strict=True)
            ]
        if not plans:
            return
        try:
            vectors, model = await self._embed_planned(plans)
        except UpstreamError as exc:
            log.warning("ingest_without_embeddings", documents=len(docs), reason_code=exc.reason_code.value)
            for p in docs:
                p.budget = None  # no vector at all: none is missing for a cap
            return
        i = 0
        for p in docs:
            p.new.embeddings, p.new.embed_model = vectors[i : i + len(p.new.chunks)], model
            i += len(p.new.chunks)
            if p.capped:
                log.info("sentence_vectors_capped", document_id=p.new.id, sentences=p.capped)

    async def store_documents(self, docs: list[Prepared]) -> list[tuple[dict[str, Any], bool]]:
        """Write `docs` in one transaction; (stored document, created) each."""
        try:
            written = await asyncio.to_thread(
                self.store.upsert_many, [p.new for p in docs], self.settings.max_total_chunks
            )
        except StoreFull as exc:
            raise self._storage_full(exc) from None
        except NotOwner as exc:
            raise not_owner(exc.doc_id) from None
        store_model, _ = await asyncio.to_thread(self.store.embed_model)
        models = {p.new.embed_model for p in docs} - {None}
        if models and store_model not in models:
            # The vectors were not stored (another model's are); BM25 still finds the documents.
            log.warning(
                "embedding_model_changed",
                store_model=store_model,
                gateway_model=sorted(models),
                fix="POST /admin/reembed",
            )
        self.metrics.ingested_chunks.inc(sum(len(p.new.chunks) for p in docs))
        return written

    async def adopt(self, doc: DocumentIn, from_id: str, owner: str = OPERATOR) -> dict[str, Any]:
        """Store `doc` with the chunks and vectors of document `from_id`, which holds the same text: a renamed
        file (connectors/sync.py) costs no parse and no embedding. The vectors keep the old title in front
        until the text changes; keywords index the new one. LookupError when `from_id` no longer holds it."""
        doc_id = document_id(doc)
        old = await asyncio.to_thread(self.store.get_document, from_id, True)
        if old is None or old["text"] != doc.text:
            raise LookupError(from_id)
        rows = await asyncio.to_thread(self.store.chunks_of, from_id)
        vectors = await asyncio.to_thread(self.store.vectors_of, [r.chunk_id for r in rows])
        model, _ = await asyncio.to_thread(self.store.embed_model)
        whole = bool(rows) and all(r.chunk_id in vectors for r in rows)
        new = NewDocument(
            doc_id,
            doc.collection,
            doc.title,
            doc.url,
            doc.metadata,
            doc.text,
            await self._off_loop(self._hash, doc),
            [r.text for r in rows],
            # Some chunk without vectors: none are copied, and retry_embeddings fills them in as usual.
            embeddings=[vectors[r.chunk_id].tolist() for r in rows] if whole else None,
            embed_model=model if whole else None,
            owner=owner,
            sections=[r.section for r in rows],
        )
        (stored, _), *_ = await self.store_documents([Prepared(doc, new)])
        return stored

    async def reembed(self) -> dict[str, Any]:
        """Re-embed every chunk with the gateway's current embedder (after a model or dimension change)."""
        vectors: dict[int, list[list[float]]] = {}
        model = None
        after = 0
        budgets: dict[str, _Budget] = {}  # a document's chunks come in order, over several batches
        while True:
            batch = await asyncio.to_thread(self.store.all_chunk_texts, after, 256)
            if not batch:
                break
            rowids = [r for r, _ in batch]
            rows = await asyncio.to_thread(self.store.chunks_by_rowid, rowids)
            for r in rowids:
                budgets.setdefault(rows[r].document_id, self._budget())
            plans = [(rows[r].heading, rows[r].text, budgets[rows[r].document_id]) for r in rowids]
            got, model = await self._embed_planned(plans)
            vectors.update(zip(rowids, got, strict=True))
            after = rowids[-1]
        if model is not None:
            await asyncio.to_thread(self.store.set_vectors, model, vectors, True)
        _, dims = await asyncio.to_thread(self.store.embed_model)
        return {"chunks": len(vectors), "model": model, "dims": dims}

    async def retry_embeddings(self) -> None:
        """Embed the documents stored while the gateway could not, every QS_EMBED_RETRY_S (the lifespan runs
        this while the app lives): a document searchable by keywords only must not stay so unnoticed."""
        while True:
            await asyncio.sleep(self.settings.embed_retry_s)
            try:
                await self.fill_vectors()
            except Exception as exc:  # a gateway or store hiccup must not end the loop: the next round tries
                log.warning("embed_retry_failed", error=f"{type(exc).__name__}: {exc}")

    async def fill_vectors(self, documents: int = 8) -> int:
        """Embed up to `documents` documents that have chunks without vectors; how many were filled."""
        filled = 0
        for doc_id in await asyncio.to_thread(self.store.without_vectors, documents):
            chunks = await asyncio.to_thread(self.store.chunks_of, doc_id)
            got, model, _ = await self._embed([(c.title, c.text) for c in chunks])
            store_model, _ = await asyncio.to_thread(self.store.embed_model)
            if store_model is not None and store_model != model:
                # The store holds another model's vectors: mixing them would rank nonsense. That needs the
                # whole store re-embedded (POST /admin/reembed), not this document alone.
                log.warning("embed_retry_other_model", store_model=store_model, gateway_model=model)
                break
            vectors = dict(zip([c.rowid for c in chunks], got, strict=True))
            await asyncio.to_thread(self.store.set_vectors, model, vectors, store_model is None)
            log.info("document_embedded", document_id=doc_id, chunks=len(chunks))
            filled += 1
        return filled

    def _budget(self) -> _Budget:
        s = self.settings
        return _Budget(s.max_sentence_vectors_per_chunk, s.max_sentence_vectors_per_document)

    async def _embed(self, chunks: list[tuple[str | None, str]]) -> tuple[list[list[list[float]]], str, int]:
        """Per (title, text) chunk of one document, in order: its vectors (`vector_texts`) within the
        document's caps, and how many sentences the caps left without a vector of their own."""
        budget = self._budget()
        out, model = await self._embed_planned([(title, text, budget) for title, text in chunks])
        return out, model, budget.capped

    async def _embed_planned(
        self, chunks: list[tuple[str | None, str, _Budget]]
    ) -> tuple[list[list[list[float]]], str]:
        """Per (title, text, its document's budget) chunk: its vectors, all of them batched together (the
        gateway client sends them in as few calls as it may)."""

        texts = await self._off_loop(planned_texts, chunks)
        flat, model = await self.gateway.embed([t for group in texts for t in group])
        self.metrics.embedded_texts.inc(len(flat))
        out, i = [], 0
        for group in texts:
            out.append(flat[i : i + len(group)])
            i += len(group)
        return out, model


@dataclass
class Prepared:
    """A document checked and chunked, on its way to the embedder and the store."""

    source: DocumentIn
    new: NewDocument
    budget: _Budget | None = None

    @property
    def capped(self) -> int:
        """Sentences that the caps left without a vector of their own."""
        return self.budget.capped if self.budget else 0


class _Budget:
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


def chunk_document(text: str, size: int, overlap: int) -> list[tuple[str | None, str]]:
    """(section path, chunk text) of a document's text: normalised first (`normalise.py`), since a chunk's
    sentences are what answers quote, then chunked section by section."""
    return chunk_sections(sections(clean_plain(text)), size, overlap)


def planned_texts(chunks: list[tuple[str | None, str, _Budget]]) -> list[list[str]]:
    """Per (title, text, its document's budget) chunk, in order: the texts embedded for it (`vector_texts`)."""
    texts = []
    for title, text, budget in chunks:
        sentences = split_sentences(text)
        texts.append(vector_texts(title, text, sentences[: budget.take(len(sentences))]))
    return texts


def document_texts(title: str | None, text: str, settings: QuerySettings) -> list[str]:
    """Every text that ingest embeds for one document, within its caps (what the benchmark embeds): its
    chunks as ingest cuts them, each under its title and section path."""
    budget = _Budget(settings.max_sentence_vectors_per_chunk, settings.max_sentence_vectors_per_document)
    pieces = chunk_document(text, settings.chunk_chars, settings.chunk_overlap_chars)
    planned = planned_texts([(heading(title, section), chunk, budget) for section, chunk in pieces])
    return [t for group in planned for t in group]


def not_owner(doc_id: str) -> CairnError:
    return CairnError(
        ReasonCode.POLICY_REJECTED,
        f"Document id {doc_id!r} belongs to another client; ids are scoped to the API key that created them."
        " Choose another id.",
    )


def vector_texts(title: str | None, text: str, sentences: list[str]) -> list[str]:
    """What is embedded for a chunk: the chunk, then `sentences` (its first sentences, in `split_sentences`
    order, as many as the caps allow), all with the title in front (it names what the chunk is about: whose
    policy, which product). Retrieval scores a chunk by the best of them; evidence.py reuses the sentence
    vectors and embeds the sentences past them when it needs them."""
    head = [f"{title}\n{text}" if title else text]
    return head + [f"{title}: {s}" if title else s for s in sentences]

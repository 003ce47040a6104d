"""Ingestion: validate, chunk, embed, and write a document in one transaction; idempotent by content hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from cairn_core import BadRequest, CairnError, ReasonCode, UpstreamError

from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.ingest_jobs import IngestJob, IngestJobs, ingest_many
from cairn_query.corpus.planning import Budget, Prepared, chunk_document, planned_texts
from cairn_query.corpus.planning import document_texts as document_texts  # re-exported: tests, benchmarks
from cairn_query.corpus.planning import vector_texts as vector_texts  # re-exported: evidence.py names it
from cairn_query.governance.access import Access, require_writer
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

    def start_batch(self, docs: list[DocumentIn], owner: str, viewer: str) -> IngestJob:
        """Ingest `docs` for `owner` in the background (ingest_jobs.py); the job reports its progress to
        `viewer` only. The caller has checked that it may write every collection of the batch."""
        return self.jobs.start(viewer, len(docs), lambda job: ingest_many(self, docs, owner, job))

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

    async def ingest(
        self, doc: DocumentIn, owner: str = OPERATOR, original: tuple[str, bytes] | None = None
    ) -> tuple[dict[str, Any], bool, bool]:
        """Store `doc` for `owner`; returns (document, created, changed). Only the owner of an existing id
        may replace it (store.may_write), so a client cannot put its text under another's title. `original`:
        the uploaded file, (content type, bytes), kept beside the document (PDFs, for their pages)."""
        prepared = await self.prepare(doc, owner, original)
        if isinstance(prepared, dict):  # unchanged: nothing embedded, nothing written
            return {**prepared, "sentences_without_vector": 0}, False, False
        await self.embed_documents([prepared])
        (stored, created), *_ = await self.store_documents([prepared])
        return {**stored, "sentences_without_vector": prepared.capped}, created, True

    async def prepare(
        self, doc: DocumentIn, owner: str, original: tuple[str, bytes] | None = None
    ) -> Prepared | dict[str, Any]:
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
            [p.text for p in pieces],
            owner=owner,
            sections=[p.section for p in pieces],
            pages=[p.page for p in pieces],
            original=original,
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

    # --- reading and deleting: what the routes ask for (http/documents.py) --------------------------------

    async def listing(
        self, collection: str | None, limit: int, offset: int, q: str | None, readable: list[str] | None
    ) -> tuple[list[dict[str, Any]], int]:
        """`readable`: the collections the caller may read (governance/access.py); None: all."""
        return await asyncio.to_thread(self.store.list_documents, collection, limit, offset, q, readable)

    async def collections(self, readable: list[str] | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list_collections, readable)

    async def get(self, doc_id: str, readable: list[str] | None) -> dict[str, Any]:
        """The document with its text and chunk ids; NOT_FOUND when there is none the caller may read."""
        doc = await asyncio.to_thread(self.store.get_document, doc_id, True, readable)
        if doc is None:
            raise not_found("document", doc_id)
        return doc

    async def check_writer(self, access: Access, collection: str) -> None:
        """Raise unless `access` may write `collection` (its first writer becomes its owner)."""
        await require_writer(access, self.store, collection)

    async def delete(self, doc_id: str, owner: str, access: Access) -> int:
        """Delete the document and its chunks; how many chunks went. A document the caller may not read is
        missing to them; one they may read, they may delete only as a writer of its collection (and only if
        they own the id)."""
        if not access.unrestricted:
            doc = await asyncio.to_thread(self.store.get_document, doc_id, False, access.collections)
            if doc is None:
                raise not_found("document", doc_id)
            await require_writer(access, self.store, doc["collection"])
        try:
            n = await asyncio.to_thread(self.store.delete_document, doc_id, owner)
        except NotOwner:
            raise not_owner(doc_id) from None
        if n is None:
            raise not_found("document", doc_id)
        return n

    async def chunk(self, chunk_id: str, readable: list[str] | None) -> dict[str, Any]:
        """The chunk, and the content type of its document's kept upload (None when none was kept)."""
        chunk = await asyncio.to_thread(self.store.get_chunk, chunk_id, readable)
        if chunk is None:
            raise not_found("chunk", chunk_id)
        original = await asyncio.to_thread(self.store.original_type, chunk.document_id)
        return {**chunk.public(), "original": original}

    async def original(self, doc_id: str, readable: list[str] | None) -> tuple[str, bytes]:
        """The file a document was read from, where QS kept it (PDFs): its content type and bytes. A document
        the caller may not read has no file to them either: checked before the bytes are read."""
        visible = await asyncio.to_thread(self.store.get_document, doc_id, False, readable)
        found = await asyncio.to_thread(self.store.original, doc_id) if visible is not None else None
        if found is None:
            raise CairnError(
                ReasonCode.NOT_FOUND,
                f"Document {doc_id!r} has no kept file: only uploaded PDFs are kept (QS_MAX_ORIGINAL_BYTES).",
            )
        return found

    async def stats(self) -> dict[str, int]:
        """How many documents and chunks the store holds; raises when the store is not usable."""
        return await asyncio.to_thread(self.store.stats)

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
            pages=[r.page for r in rows],
            original=await asyncio.to_thread(self.store.original, from_id),
        )
        (stored, _), *_ = await self.store_documents([Prepared(doc, new)])
        return stored

    async def reembed(self) -> dict[str, Any]:
        """Re-embed every chunk with the gateway's current embedder (after a model or dimension change)."""
        vectors: dict[int, list[list[float]]] = {}
        model = None
        after = 0
        budgets: dict[str, Budget] = {}  # a document's chunks come in order, over several batches
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

    def _budget(self) -> Budget:
        s = self.settings
        return Budget(s.max_sentence_vectors_per_chunk, s.max_sentence_vectors_per_document)

    async def _embed(self, chunks: list[tuple[str | None, str]]) -> tuple[list[list[list[float]]], str, int]:
        """Per (title, text) chunk of one document, in order: its vectors (`vector_texts`) within the
        document's caps, and how many sentences the caps left without a vector of their own."""
        budget = self._budget()
        out, model = await self._embed_planned([(title, text, budget) for title, text in chunks])
        return out, model, budget.capped

    async def _embed_planned(
        self, chunks: list[tuple[str | None, str, Budget]]
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


def not_found(what: str, ident: str) -> CairnError:
    return CairnError(ReasonCode.NOT_FOUND, f"No {what} with id {ident!r}.")


def not_owner(doc_id: str) -> CairnError:
    return CairnError(
        ReasonCode.POLICY_REJECTED,
        f"Document id {doc_id!r} belongs to another client; ids are scoped to the API key that created them."
        " Choose another id.",
    )

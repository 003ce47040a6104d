"""Ingestion: validate, chunk, embed, and write a document in one transaction; idempotent by content hash."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import structlog
from cairn_core import BadRequest, UpstreamError

from .chunking import chunk_text
from .gateway import GatewayClient
from .metrics import QueryMetrics
from .schemas import DocumentIn
from .settings import QuerySettings
from .store import NewDocument, SQLiteStore

log = structlog.get_logger("ingest")


def document_id(doc: DocumentIn) -> str:
    if doc.id:
        return doc.id
    # Same url (or same text when there is none) in the same collection → same id → idempotent re-ingest.
    key = doc.url or doc.text
    return hashlib.sha256(f"{doc.collection}\x00{key}".encode()).hexdigest()[:16]


class DocumentService:
    def __init__(
        self, settings: QuerySettings, store: SQLiteStore, gateway: GatewayClient, metrics: QueryMetrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.metrics = metrics

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

    async def ingest(self, doc: DocumentIn) -> tuple[dict[str, Any], bool, bool]:
        """Store `doc`; returns (document, created, changed)."""
        doc_id = document_id(doc)
        digest = self._hash(doc)
        if await asyncio.to_thread(self.store.content_hash, doc_id) == digest:
            existing = await asyncio.to_thread(self.store.get_document, doc_id)
            if existing is not None:
                return existing, False, False
        chunks = chunk_text(doc.text, self.settings.chunk_chars, self.settings.chunk_overlap_chars)
        if not chunks:
            raise BadRequest("The document has no text to index.")
        new = NewDocument(doc_id, doc.collection, doc.title, doc.url, doc.metadata, doc.text, digest, chunks)
        try:
            # The title goes into the vector too: it often names what the chunk is about.
            texts = [f"{doc.title}\n{c}" if doc.title else c for c in chunks]
            new.embeddings, new.embed_model = await self.gateway.embed(texts)
        except UpstreamError as exc:
            # Still stored and searchable by BM25; POST /admin/reembed fills the vectors in later.
            log.warning("ingest_without_embeddings", document_id=doc_id, reason_code=exc.reason_code.value)
        stored, created = await asyncio.to_thread(self.store.upsert, new)
        store_model, _ = await asyncio.to_thread(self.store.embed_model)
        if new.embed_model is not None and store_model != new.embed_model:
            # The vectors were not stored (another model's are); BM25 still finds the document.
            log.warning(
                "embedding_model_changed",
                store_model=store_model,
                gateway_model=new.embed_model,
                fix="POST /admin/reembed",
            )
        self.metrics.ingested_chunks.inc(len(chunks))
        return stored, created, True

    async def reembed(self) -> dict[str, Any]:
        """Re-embed every chunk with the gateway's current embedder (after a model or dimension change)."""
        vectors: dict[int, list[float]] = {}
        model = None
        after = 0
        while True:
            batch = await asyncio.to_thread(self.store.all_chunk_texts, after, 256)
            if not batch:
                break
            rowids = [r for r, _ in batch]
            texts = await asyncio.to_thread(self._texts_with_titles, rowids)
            got, model = await self.gateway.embed(texts)
            vectors.update(zip(rowids, got, strict=True))
            after = rowids[-1]
        if model is not None:
            await asyncio.to_thread(self.store.set_vectors, model, vectors, True)
        _, dims = await asyncio.to_thread(self.store.embed_model)
        return {"chunks": len(vectors), "model": model, "dims": dims}

    def _texts_with_titles(self, rowids: list[int]) -> list[str]:
        rows = self.store.chunks_by_rowid(rowids)
        return [f"{rows[r].title}\n{rows[r].text}" if rows[r].title else rows[r].text for r in rowids]

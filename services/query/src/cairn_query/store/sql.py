"""The corpus in SQL, once for both backends: documents, chunks, ownership, limits, scopes and permissions.

`SqlStore` holds every statement that SQLite and PostgreSQL share (written with `?` placeholders; PostgreSQL's
store turns them into `%s` in sql_meta.py, with the corpus meta). A dialect subclass adds only what
differs: its connections and transactions, its migrations, the keyword index (FTS5 or `tsvector`) and the
vectors (a BLOB per chunk searched in numpy, or pgvector rows behind HNSW). The hooks it fills are the
`NotImplementedError` methods below.

Every write is one transaction, bumps the corpus `version` and is serialised against the other writers of
the store (SQLite's BEGIN IMMEDIATE; a row lock on the version row in PostgreSQL), so the chunk limit and a
document's `seq` are read inside it.

Every corpus read takes `collections`, the caller's permission filter (governance/access.py): None reads
everything (the operator, an admin), [] nothing. It is a clause of the read's own query (`_within`), never a
filter over its results, so no read path can forget it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from cairn_query.store.base import (
    LEGACY_OWNER,
    OPERATOR,
    ChunkRow,
    NewDocument,
    NotOwner,
    StoreFull,
    chunk_row,
    document_row,
    may_write,
)
from cairn_query.store.sql_meta import Row, SqlMeta
from cairn_query.store.values import like_pattern, now_iso

__all__ = ["Row", "SqlStore"]

_CHUNK_SELECT = (
    "SELECT c.rowid AS rowid, c.chunk_id, c.document_id, c.idx, c.text, c.section, c.page, d.title, d.url,"
    " d.collection, d.metadata FROM chunks c JOIN documents d ON d.id = c.document_id"
)
_CHUNK_COUNT = "(SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id) AS n"
_DOC_COLUMNS = "d.id, d.collection, d.title, d.url, d.metadata, d.created_at, d.updated_at"


class SqlStore(SqlMeta):
    """The shared half of a store; see the module's docstring for what a dialect adds."""

    # SQL, per dialect: a chunk `c` has no vectors; a case-blind LIKE.
    NO_VECTORS = ""
    ILIKE = "LIKE"

    # --- what a dialect provides ------------------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[Any]:
        """A write transaction (serialised with every other writer), yielding its connection."""
        raise NotImplementedError

    def _metadata_param(self, metadata: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _filter(self, key: str, value: Any) -> tuple[str, list[Any]]:
        """A clause (over document `d`) true when the document's metadata has `key` equal to `value`."""
        raise NotImplementedError

    def _delete_chunks(self, conn: Any, doc_id: str) -> int:
        """Remove a document's chunks with their keyword rows and vectors; how many chunks there were."""
        raise NotImplementedError

    def _insert_chunks(self, conn: Any, docs: Sequence[tuple[NewDocument, bool]]) -> None:
        """Every chunk of these documents with its keyword row, and its vectors where the flag says so."""
        raise NotImplementedError

    def _serialise(self, conn: Any) -> None:
        """From here to the commit, this transaction is the store's only writer (a no-op where it is from
        the start, as under SQLite's BEGIN IMMEDIATE)."""

    def _model_set(self, conn: Any, dims: int) -> None:
        """The store's embedding model was just set (first vectors, or a reembed): `dims` from now on."""

    def _clear_vectors(self, conn: Any, rowids: Sequence[int] | None) -> None:
        """Remove the vectors of these chunks (None: of every chunk, before a reembed)."""
        raise NotImplementedError

    def _write_vectors(self, conn: Any, vectors: dict[int, list[list[float]]]) -> None:
        raise NotImplementedError

    def stats(self, collections: list[str] | None = None) -> dict[str, int]:
        """How many documents and chunks; with `collections`, only theirs (the dashboard of a user)."""
        where, params = _within(collections)
        join = " JOIN documents d ON d.id = c.document_id" if collections is not None else ""
        row = self._query(
            f"SELECT (SELECT COUNT(*) FROM documents d WHERE {where}) AS documents,"
            f" (SELECT COUNT(*) FROM chunks c{join} WHERE {where}) AS chunks",
            [*params, *params],
        )[0]
        return {"documents": int(row["documents"]), "chunks": int(row["chunks"])}

    # --- documents --------------------------------------------------------------------------------------

    def content_hash(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_hash FROM documents WHERE id=?", (doc_id,))
        return rows[0]["content_hash"] if rows else None

    def _room_after(self, conn: Any, added: int, limit: int | None) -> None:
        """The chunk limit, checked after this transaction's writes (so its own rows are counted)."""
        if limit is None:
            return
        total = int(self._exec(conn, "SELECT COUNT(*) FROM chunks").fetchone()[0])
        if total > limit:
            raise StoreFull(total - added, added, limit)

    def check_room(self, doc_id: str, adding: int, limit: int) -> None:
        """Raise StoreFull if `adding` chunks for `doc_id` would pass `limit`."""
        # The document's own old chunks are replaced, so they do not count against it.
        row = self._query(
            "SELECT (SELECT COUNT(*) FROM chunks) - (SELECT COUNT(*) FROM chunks WHERE document_id = ?) AS n",
            (doc_id,),
        )[0]
        if int(row["n"]) + adding > limit:
            raise StoreFull(int(row["n"]), adding, limit)

    def upsert(self, doc: NewDocument, max_chunks: int | None = None) -> tuple[dict[str, Any], bool]:
        """Write a document with its chunks, keyword rows and vectors in one transaction; returns
        (doc, created). With `max_chunks`, raise StoreFull instead of passing it (checked inside the write
        transaction, so concurrent uploads cannot both squeeze in)."""
        return self.upsert_many([doc], max_chunks)[0]

    def upsert_many(
        self, docs: Sequence[NewDocument], max_chunks: int | None = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """`upsert` for a batch of documents (distinct ids) in one transaction: all are written or none."""
        with self._tx() as conn:
            keep = [self._accept_vectors(conn, d) for d in docs]
            created = [self._replace_document(conn, d) for d in docs]
            self._insert_chunks(conn, list(zip(docs, keep, strict=True)))
            for d in docs:  # an old original went with the old row (ON DELETE CASCADE)
                if d.original is not None:
                    self._exec(conn, "INSERT INTO originals VALUES (?, ?, ?)", (d.id, *d.original))
            # The writers meet here (the bump locks the version row), so on PostgreSQL the slow part above,
            # chunks and vectors into their indexes, runs in parallel; what must be serial comes after it.
            self._bump(conn)
            self._room_after(conn, sum(len(d.chunks) for d in docs), max_chunks)
            for d in docs:
                self._exec(
                    conn,
                    "UPDATE documents SET seq = (SELECT MAX(seq) + 1 FROM documents) WHERE id = ?",
                    (d.id,),
                )
        got = self.get_documents([d.id for d in docs])
        return [(got[d.id], c) for d, c in zip(docs, created, strict=True)]

    def _accept_vectors(self, conn: Any, doc: NewDocument) -> bool:
        """Whether `doc`'s vectors are stored: yes when they are the store's model's (the first vectors set
        it), no when the store holds another model's (they wait for /admin/reembed; BM25 still finds it)."""
        if doc.embeddings is None:
            return False
        model, dims = self._meta_embed(conn)
        vec_dims = len(doc.embeddings[0][0]) if len(doc.embeddings) else 0
        keep = model is None or (model == doc.embed_model and dims == vec_dims)
        if keep and len(doc.embeddings) != len(doc.chunks):
            raise ValueError(f"{doc.id}: {len(doc.chunks)} chunks but vectors for {len(doc.embeddings)}")
        if model is None and vec_dims:
            self._serialise(conn)  # the first vectors set the model: one writer at a time from here
            model, dims = self._meta_embed(conn)
            if model is not None:  # another writer set it meanwhile
                return model == doc.embed_model and dims == vec_dims
            self._set_embed_meta(conn, doc.embed_model or "unknown", vec_dims)
            self._model_set(conn, vec_dims)
        return keep

    def _replace_document(self, conn: Any, doc: NewDocument) -> bool:
        """The document's row, replacing an old one of the same id (its chunks go too); True when new."""
        old = self._exec(conn, "SELECT created_at, owner FROM documents WHERE id=?", (doc.id,)).fetchone()
        if old is not None and not may_write(old[1], doc.owner):
            raise NotOwner(doc.id)
        if old is not None:
            self._delete_chunks(conn, doc.id)
            self._exec(conn, "DELETE FROM documents WHERE id=?", (doc.id,))
        now = now_iso()
        self._exec(
            conn,
            "INSERT INTO documents (id, collection, title, url, metadata, text, content_hash, created_at,"
            " updated_at, seq, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",  # seq: set at the end
            (
                doc.id,
                doc.collection,
                doc.title,
                doc.url,
                self._metadata_param(doc.metadata),
                doc.text,
                doc.content_hash,
                old[0] if old else now,
                now,
                # An operator's rewrite keeps the owner, so the client can still manage its document.
                (old[1] or LEGACY_OWNER) if old and doc.owner == OPERATOR else doc.owner,
            ),
        )
        return old is None

    def owner_of(self, doc_id: str) -> tuple[bool, str | None]:
        """(the document exists, its owner)."""
        rows = self._query("SELECT owner FROM documents WHERE id=?", (doc_id,))
        return (True, rows[0]["owner"]) if rows else (False, None)

    def delete_document(self, doc_id: str, owner: str = OPERATOR) -> int | None:
        with self._tx() as conn:
            row = self._exec(conn, "SELECT owner FROM documents WHERE id=?", (doc_id,)).fetchone()
            if row is None:
                return None
            if not may_write(row[0], owner):
                raise NotOwner(doc_id)
            count = self._delete_chunks(conn, doc_id)
            self._exec(conn, "DELETE FROM documents WHERE id=?", (doc_id,))
            self._bump(conn)
            return count

    def _embedded(self) -> str:
        """A document `d` is `embedded` when none of its chunks lacks vectors."""
        return f"NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id AND {self.NO_VECTORS}) AS embedded"

    def get_document(
        self, doc_id: str, with_text: bool = False, collections: list[str] | None = None
    ) -> dict[str, Any] | None:
        return self.get_documents([doc_id], with_text, collections).get(doc_id)

    def get_documents(
        self, doc_ids: Sequence[str], with_text: bool = False, collections: list[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        marks = ",".join("?" * len(doc_ids))
        where, params = _within(collections)
        rows = self._query(
            f"SELECT {_DOC_COLUMNS}, d.text, {self._embedded()}, {_CHUNK_COUNT}"
            f" FROM documents d WHERE d.id IN ({marks}) AND {where}",
            [*doc_ids, *params],
        )
        docs = {r["id"]: document_row(r) for r in rows}
        if with_text:
            for r in rows:
                ids = self._query("SELECT chunk_id FROM chunks WHERE document_id=? ORDER BY idx", (r["id"],))
                docs[r["id"]].update(text=r["text"], chunk_ids=[c["chunk_id"] for c in ids])
        return docs

    def original(self, doc_id: str) -> tuple[str, bytes] | None:
        rows = self._query("SELECT content_type, data FROM originals WHERE document_id=?", (doc_id,))
        return (rows[0]["content_type"], bytes(rows[0]["data"])) if rows else None

    def original_type(self, doc_id: str) -> str | None:
        rows = self._query("SELECT content_type FROM originals WHERE document_id=?", (doc_id,))
        return rows[0]["content_type"] if rows else None

    def list_documents(
        self,
        collection: str | None,
        limit: int,
        offset: int,
        q: str | None = None,
        collections: list[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        within, params = _within(collections)
        clauses = [within]
        if collection:
            clauses.append("d.collection=?")
            params.append(collection)
        if q:
            # Case ignored, as the page's search box expects; the pattern's own % and _ are literal.
            clauses.append(f"(d.title {self.ILIKE} ? ESCAPE '\\' OR d.id {self.ILIKE} ? ESCAPE '\\')")
            params += [like_pattern(q)] * 2
        where = f"WHERE {' AND '.join(clauses)}"
        rows = self._query(
            f"SELECT {_DOC_COLUMNS}, {self._embedded()}, {_CHUNK_COUNT}"
            f" FROM documents d {where} ORDER BY d.seq DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        total = self._query(f"SELECT COUNT(*) AS n FROM documents d {where}", params)[0]["n"]
        return [document_row(r) for r in rows], int(total)

    def list_collections(self, collections: list[str] | None = None) -> list[dict[str, Any]]:
        where, params = _within(collections)
        rows = self._query(
            f"SELECT d.collection, COUNT(*) AS n FROM documents d WHERE {where}"
            " GROUP BY d.collection ORDER BY d.collection",
            params,
        )
        return [{"name": r["collection"], "documents": int(r["n"])} for r in rows]

    # --- chunks -----------------------------------------------------------------------------------------

    def get_chunk(self, chunk_id: str, collections: list[str] | None = None) -> ChunkRow | None:
        where, params = _within(collections)
        rows = self._query(f"{_CHUNK_SELECT} WHERE c.chunk_id=? AND {where}", (chunk_id, *params))
        return chunk_row(rows[0]) if rows else None

    def chunks_by_rowid(
        self, rowids: Sequence[int], collections: list[str] | None = None
    ) -> dict[int, ChunkRow]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        where, params = _within(collections)
        rows = self._query(f"{_CHUNK_SELECT} WHERE c.rowid IN ({marks}) AND {where}", [*rowids, *params])
        return {r["rowid"]: chunk_row(r) for r in rows}

    def chunks_of(self, doc_id: str) -> list[ChunkRow]:
        return [
            chunk_row(r)
            for r in self._query(f"{_CHUNK_SELECT} WHERE c.document_id=? ORDER BY c.idx", (doc_id,))
        ]

    def without_vectors(self, limit: int) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT c.document_id FROM chunks c WHERE {self.NO_VECTORS} LIMIT ?", (limit,)
        )
        return [r["document_id"] for r in rows]

    def all_chunk_texts(self, after_rowid: int, limit: int) -> list[tuple[int, str]]:
        rows = self._query(
            "SELECT rowid AS rowid, text FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after_rowid, limit),
        )
        return [(r["rowid"], r["text"]) for r in rows]

    def set_vectors(self, model: str, vectors: dict[int, list[list[float]]], reset: bool) -> None:
        """Store these chunks' vectors; with `reset`, first drop every vector and make `model` the store's."""
        with self._tx() as conn:
            self._clear_vectors(conn, None if reset else list(vectors))
            dims = len(next(iter(vectors.values()))[0]) if vectors else 0
            if reset:
                self._set_embed_meta(conn, model, dims)
            self._write_vectors(conn, vectors)
            if reset and dims:
                self._model_set(conn, dims)  # after the rows are in: an index built at once is faster
            self._bump(conn)

    # --- scopes -----------------------------------------------------------------------------------------

    def _scope(
        self, collection: str | None, filters: dict[str, Any], collections: list[str] | None = None
    ) -> tuple[str, list[Any]]:
        """A WHERE clause over document `d` for the permission filter, a collection and metadata filters
        ("" when unscoped: then the dialect may search its index without a join)."""
        clauses: list[str] = []
        params: list[Any] = []
        if collections is not None:
            within, params = _within(collections)
            clauses.append(within)
        if collection:
            clauses.append("d.collection = ?")
            params.append(collection)
        for key, value in filters.items():
            clause, more = self._filter(key, value)
            clauses.append(clause)
            params += more
        return (" AND ".join(clauses), params)


def _within(collections: list[str] | None) -> tuple[str, list[Any]]:
    """The permission filter on `documents d`: its collection is one of `collections` (None: no filter, an
    empty list: nothing). Written for both dialects; it uses the documents_collection index."""
    if collections is None:
        return "TRUE", []
    if not collections:
        return "FALSE", []
    return f"d.collection IN ({','.join('?' * len(collections))})", list(collections)

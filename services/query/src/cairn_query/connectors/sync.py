"""One run of one source: what the connector lists now against what the store holds for it.

Per item, cheapest test first:
- same `version` as stored (stat stamp, blob id, page hash) and its document still there: unchanged, not read;
- read, and its bytes hash as stored: unchanged, only the new version is recorded (a `touch`);
- otherwise parsed in the sandboxed parser (corpus/parsing.py) and stored through DocumentService, which
  embeds it (and itself skips the embedding when the text and title are the same as stored).
Once the scan is complete, stored items it did not list are gone. A new item whose bytes hash like a gone
one (and that parses the same way) is that file renamed: its document is stored under the new path with the
old chunks and vectors (`DocumentService.adopt`), so a rename costs no embedding. The rest of the gone items'
documents are deleted. A scan that fails part-way deletes nothing: an unreachable source is not an empty one.

Document ids are derived from the source and the item's key, so a run that crashed after storing a document
but before recording it finds the document already there and embeds nothing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import structlog
from cairn_core import CairnError, ReasonCode
from pydantic import ValidationError

from cairn_query.connectors.base import Connector, Item, ScanError
from cairn_query.corpus.documents import DocumentService
from cairn_query.corpus.parsing import FileParser
from cairn_query.schemas import DocumentIn
from cairn_query.store import OPERATOR, Store, now_iso
from cairn_query.store.connectors import ItemRow, SourceRow

log = structlog.get_logger("connectors")

MAX_FAILURES_KEPT = 100  # per run, in its status; the counts stay exact past it
_SAVE_EVERY_S = 2.0  # a long run's status is written this often, so the page shows its progress


def document_id(source: str, key: str) -> str:
    return "c-" + hashlib.sha256(f"{source}\x00{key}".encode()).hexdigest()[:24]


@dataclass
class RunReport:
    """A run's status, as the API and the page show it (docs/connectors.md, "Status")."""

    source: str
    trigger: str  # schedule | watch | manual
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    state: str = "running"  # running | ok | partial (some items failed) | failed (the scan did)
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    seen: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    renamed: int = 0
    deleted: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None  # why the whole run failed
    duration_s: float | None = None
    _t0: float = field(default_factory=time.monotonic)

    def fail(self, key: str, code: ReasonCode, message: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append({"key": key, "reason_code": code.value, "message": message})

    def finish(self, code: ReasonCode | None = None, message: str = "") -> RunReport:
        self.finished_at = now_iso()
        self.duration_s = round(time.monotonic() - self._t0, 3)
        if code is not None:
            self.state = "failed"
            self.error = {"reason_code": code.value, "message": message}
        else:
            self.state = "partial" if self.failed else "ok"
        return self

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


class _ItemFailed(Exception):
    def __init__(self, code: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _New:
    item: Item
    data: bytes
    digest: str


class _Pool:
    """At most `size` coroutines at once: a folder of many small files parses in as many child processes as
    the parser allows (QS_PARSE_CONCURRENCY) while others embed, instead of one file after the other."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: set[asyncio.Task[None]] = set()

    async def add(self, work: Coroutine[Any, Any, None]) -> None:
        while len(self.tasks) >= self.size:
            done, self.tasks = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a bug in one item ends the run (the service reports it), not silently
        self.tasks.add(asyncio.create_task(work))

    async def join(self) -> None:
        tasks, self.tasks = self.tasks, set()
        await asyncio.gather(*tasks)

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class SyncEngine:
    def __init__(
        self, store: Store, documents: DocumentService, parser: FileParser, concurrency: int
    ) -> None:
        self.store = store
        self.documents = documents
        self.parser = parser
        self.concurrency = concurrency

    async def run(self, source: SourceRow, connector: Connector, report: RunReport) -> RunReport:
        table = self.store.connectors
        known = await asyncio.to_thread(table.items, source.name)
        seen: set[str] = set()
        new: list[_New] = []
        pool = _Pool(self.concurrency)
        saved = time.monotonic()
        try:
            try:
                async for item in connector.scan(known):
                    if item.key not in seen:
                        seen.add(item.key)
                        report.seen += 1
                        await pool.add(
                            self._listed(source, connector, item, known.get(item.key), new, report)
                        )
                    if time.monotonic() - saved > _SAVE_EVERY_S:
                        await asyncio.to_thread(table.set_status, source.name, report.public())
                        saved = time.monotonic()
            except ScanError as exc:
                await pool.join()  # what was listed is stored; nothing is deleted
                return report.finish(ReasonCode.SOURCE_UNAVAILABLE, str(exc))
            await pool.join()
            gone = {k: row for k, row in known.items() if k not in seen}
            for fresh, twin in self._pair(new, gone):
                await pool.add(self._add(source, fresh, twin, gone, report))
            await pool.join()
        finally:
            pool.cancel()  # the run was cancelled (its source deleted, QS stopping)
        for row in gone.values():
            await asyncio.to_thread(self.store.delete_document, row.document_id, OPERATOR)
            await asyncio.to_thread(table.drop_item, source.name, row.key)
            report.deleted += 1
        return report.finish()

    @staticmethod
    def _pair(new: list[_New], gone: dict[str, ItemRow]) -> list[tuple[_New, ItemRow | None]]:
        """Each new item with the gone item it is a rename of (same bytes, same type), each gone one at most once."""
        claimed: set[str] = set()
        out = []
        for fresh in new:
            twin = next(
                (
                    r
                    for r in gone.values()
                    if r.key not in claimed
                    and r.present
                    and r.content_hash == fresh.digest
                    and r.kind == fresh.item.kind
                ),
                None,
            )
            if twin is not None:
                claimed.add(twin.key)
            out.append((fresh, twin))
        return out

    async def _listed(
        self,
        source: SourceRow,
        connector: Connector,
        item: Item,
        prev: ItemRow | None,
        new: list[_New],
        report: RunReport,
    ) -> None:
        try:
            fresh = await self._item(source, connector, item, prev, report)
        except _ItemFailed as exc:
            report.fail(item.key, exc.code, exc.message)
            return
        if fresh is not None:
            new.append(fresh)

    async def _item(
        self, source: SourceRow, connector: Connector, item: Item, prev: ItemRow | None, report: RunReport
    ) -> _New | None:
        """Sync one listed item; a new one is returned, to be stored once the scan says what is gone."""
        if item.error is not None:
            raise _ItemFailed(ReasonCode.SOURCE_UNAVAILABLE, item.error)
        if prev is not None and prev.present and prev.version == item.version:
            report.unchanged += 1
            return None
        try:
            data = item.data if item.data is not None else await connector.fetch(item)
        except Exception as exc:  # one unreadable file must not end the run; it keeps what is stored
            raise _ItemFailed(ReasonCode.SOURCE_UNAVAILABLE, f"{type(exc).__name__}: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        if prev is None:
            return _New(item, data, digest)
        if prev.present and prev.content_hash == digest and prev.kind == item.kind:
            report.unchanged += 1  # touched, not changed: only the new version is recorded
            await self._record(source, item, prev.document_id, digest)
            return None
        await self._store(source, item, data, digest, prev.document_id)
        report.changed += 1
        return None

    async def _add(
        self,
        source: SourceRow,
        fresh: _New,
        twin: ItemRow | None,
        gone: dict[str, ItemRow],
        report: RunReport,
    ) -> None:
        item = fresh.item
        try:
            if twin is not None and await self._move(source, item, twin, fresh.digest):
                gone.pop(twin.key, None)
                report.renamed += 1
                return
            await self._store(source, item, fresh.data, fresh.digest, document_id(source.name, item.key))
            report.added += 1
        except _ItemFailed as exc:
            report.fail(item.key, exc.code, exc.message)

    async def _move(self, source: SourceRow, item: Item, twin: ItemRow, digest: str) -> bool:
        """Re-point `twin`'s document to `item` (a rename) without parsing or embedding; False when its
        document cannot be reused, and the item is then stored as new."""
        old = await asyncio.to_thread(self.store.get_document, twin.document_id, True)
        if old is None:
            return False
        # A title taken from the old file name follows the file; one the file itself gave is kept.
        title = item.title if old["title"] == PurePosixPath(twin.key).name else old["title"]
        doc = self._document(source, item, document_id(source.name, item.key), old["text"], title)
        try:
            await self.documents.adopt(doc, twin.document_id, OPERATOR)
        except (LookupError, CairnError):
            return False
        await asyncio.to_thread(self.store.delete_document, twin.document_id, OPERATOR)
        await asyncio.to_thread(self.store.connectors.drop_item, source.name, twin.key)
        await self._record(source, item, doc.id or "", digest)
        log.info("connector_item_renamed", source=source.name, old=twin.key, new=item.key)
        return True

    async def _store(self, source: SourceRow, item: Item, data: bytes, digest: str, doc_id: str) -> None:
        try:
            text, found_title = await self.parser.extract(item.name, item.content_type, data)
            if not text.strip():
                raise _ItemFailed(ReasonCode.BAD_REQUEST, "No text could be extracted from it.")
            doc = self._document(source, item, doc_id, text, found_title or item.title)
            await self.documents.ingest(doc, OPERATOR)
        except CairnError as exc:
            raise _ItemFailed(exc.reason_code, exc.message) from None
        except ValidationError as exc:
            raise _ItemFailed(ReasonCode.BAD_REQUEST, str(exc.errors()[0]["msg"])) from None
        await self._record(source, item, doc_id, digest)

    def _document(
        self, source: SourceRow, item: Item, doc_id: str, text: str, title: str | None
    ) -> DocumentIn:
        return DocumentIn(
            id=doc_id,
            collection=source.collection,
            title=(title or item.name)[:500],
            url=item.url if item.url and len(item.url) <= 2000 else None,
            metadata={**item.metadata, "source": source.name, "path": item.key[:500]},
            text=text,
        )

    async def _record(self, source: SourceRow, item: Item, doc_id: str, digest: str) -> None:
        row = ItemRow(item.key, doc_id, item.version, digest, item.kind, item.state)
        await asyncio.to_thread(self.store.connectors.put_item, source.name, row)

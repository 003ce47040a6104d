"""Batch ingest jobs: many documents in one request, ingested in the background, with their progress.

`POST /v1/documents/batch` starts a job and answers at once; `GET /v1/ingest/{job_id}` reports it. The job
runs `ingest_many` (below): documents in groups, each group chunked while the one before is embedded and
the one before that is written (one transaction per group), so the CPU, the embedder and the store work at
the same time. A document whose content hash is stored already costs no embedding and no write, so a job
re-sent after a crash (or a restart) redoes only what was not stored: jobs live in the process's memory, the
documents in the store.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cairn_core import CairnError, ReasonCode

from cairn_query.schemas import DocumentIn
from cairn_query.store.values import now_iso

if TYPE_CHECKING:
    from cairn_query.corpus.documents import DocumentService
    from cairn_query.corpus.planning import Prepared

_KEPT = 100  # finished jobs kept for their status, newest first


@dataclass
class IngestJob:
    id: str
    viewer: str  # who may see it (http/documents.py: the client and the user that started it)
    total: int
    state: str = "running"  # running | done | failed
    stored: int = 0  # written, new or changed
    unchanged: int = 0  # same content hash as stored: nothing embedded, nothing written
    chunks: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {index, id, reason_code, message}
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None

    def public(self) -> dict[str, Any]:
        done = self.stored + self.unchanged + len(self.failed)
        return {
            "id": self.id,
            "state": self.state,
            "total": self.total,
            "done": done,
            "stored": self.stored,
            "unchanged": self.unchanged,
            "chunks": self.chunks,
            "failed": self.failed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class IngestJobs:
    """The jobs of one process, and their tasks (cancelled at shutdown)."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, IngestJob] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, viewer: str, total: int, work: Any) -> IngestJob:
        """Register a job and run `work(job)` (a coroutine function) in the background."""
        job = IngestJob(secrets.token_hex(8), viewer, total)
        self._jobs[job.id] = job
        while len(self._jobs) > _KEPT:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].state == "running":
                break
            del self._jobs[oldest]
        task = asyncio.create_task(self._run(job, work(job)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: IngestJob, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            job.state = "done"
        except Exception as exc:  # reported in the job's status, which is where its caller looks
            job.state = "failed"
            job.failed.append(
                {
                    "index": None,
                    "id": None,
                    "reason_code": ReasonCode.INTERNAL_ERROR.value,
                    "message": str(exc),
                }
            )
        finally:
            job.finished_at = now_iso()

    def get(self, job_id: str, viewer: str) -> IngestJob | None:
        """The job, for the one who started it; anyone else's job reads as missing."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.viewer == viewer else None

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


async def ingest_many(documents: DocumentService, docs: list[DocumentIn], owner: str, job: IngestJob) -> None:
    """Ingest `docs` in groups of QS_INGEST_GROUP, pipelined: a group is chunked while the one before is
    embedded and the one before that is written (one transaction per group); progress goes to `job`."""
    size = documents.settings.ingest_group
    groups = [list(enumerate(docs))[i : i + size] for i in range(0, len(docs), size)]
    writing: asyncio.Task[None] | None = None
    preparing = asyncio.ensure_future(_prepare_group(documents, groups[0], owner, job)) if groups else None
    for k in range(len(groups)):
        assert preparing is not None
        ready = await preparing
        if k + 1 < len(groups):
            preparing = asyncio.ensure_future(_prepare_group(documents, groups[k + 1], owner, job))
        await documents.embed_documents([p for _, p in ready])
        if writing is not None:
            await writing
        writing = asyncio.ensure_future(_store_group(documents, ready, job))
    if writing is not None:
        await writing


async def _prepare_group(
    documents: DocumentService, group: list[tuple[int, DocumentIn]], owner: str, job: IngestJob
) -> list[tuple[int, Prepared]]:
    ready = []
    for index, doc in group:
        try:
            prepared = await documents.prepare(doc, owner)
        except CairnError as exc:
            job.failed.append(_failure(index, doc, exc))
            continue
        if isinstance(prepared, dict):
            job.unchanged += 1
        else:
            ready.append((index, prepared))
    return ready


async def _store_group(documents: DocumentService, ready: list[tuple[int, Prepared]], job: IngestJob) -> None:
    if not ready:
        return
    try:
        await documents.store_documents([p for _, p in ready])
        done = ready
    except CairnError:  # one document (full store, another owner's id) fails the group: one at a time
        done = []
        for index, prepared in ready:
            try:
                await documents.store_documents([prepared])
                done.append((index, prepared))
            except CairnError as exc:
                job.failed.append(_failure(index, prepared.source, exc))
    job.stored += len(done)
    job.chunks += sum(len(p.new.chunks) for _, p in done)


def _failure(index: int, doc: DocumentIn, exc: CairnError) -> dict[str, Any]:
    return {"index": index, "id": doc.id, "reason_code": exc.reason_code.value, "message": exc.message}

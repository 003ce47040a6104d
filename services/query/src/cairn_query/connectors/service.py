"""Connector sources as a service: configure them (the API's CRUD), start a run, and know who runs what.

A run holds the source's lease in the store (store/connectors.py) from start to end, renewed every third of
`QS_CONNECTORS_LEASE_S`: of several QS replicas one runs a source, and within this process a source has one
run at a time (`_runs`). A change seen while a run goes on (a folder event) asks for one more run after it
(`_again`), so no event is lost to a run that had already listed the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import structlog
from cairn_core import BadRequest, CairnError, ReasonCode
from pydantic import ValidationError

from cairn_query.connectors.base import Context, build, connector_class
from cairn_query.connectors.models import ConnectorIn, ConnectorPatch
from cairn_query.connectors.sync import RunReport, SyncEngine
from cairn_query.corpus.documents import DocumentService
from cairn_query.corpus.parsing import FileParser
from cairn_query.settings import QuerySettings
from cairn_query.store import OPERATOR, Store
from cairn_query.store.connectors import SourceRow

log = structlog.get_logger("connectors")

USER_AGENT = "CairnBot/0.1 (+https://github.com/cairn; docs/connectors.md)"


def not_found(name: str) -> CairnError:
    return CairnError(ReasonCode.NOT_FOUND, f"No connector source named {name!r}.")


def _check_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as the connector reads it (defaults filled in); 400 with the field at fault otherwise."""
    try:
        return connector_class(kind).Config.model_validate(config).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise BadRequest(f"config.{where}: {first['msg']}") from None


class ConnectorService:
    def __init__(
        self, settings: QuerySettings, store: Store, documents: DocumentService, parser: FileParser
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = SyncEngine(store, documents, parser, settings.connectors_concurrency)
        # Who holds a lease: this process, on this host, this time it started.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        cache = settings.connectors_cache_dir or str(
            Path(settings.db_path).expanduser().parent / "connectors"
        )
        self.context = Context(
            cache_dir=Path(cache).expanduser().resolve(),
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.connectors_timeout_s,
            user_agent=USER_AGENT,
        )
        self._runs: dict[str, asyncio.Task[RunReport | None]] = {}
        self._again: set[str] = set()

    # --- configuration -----------------------------------------------------------------------------------

    async def _row(self, name: str) -> SourceRow:
        row = await asyncio.to_thread(self.store.connectors.get, name)
        if row is None:
            raise not_found(name)
        return row

    async def public(self, row: SourceRow) -> dict[str, Any]:
        holder = await asyncio.to_thread(self.store.connectors.lease_holder, row.name)
        ids = await asyncio.to_thread(self.store.connectors.document_ids, row.name)
        return {
            "name": row.name,
            "kind": row.kind,
            "config": row.config,
            "collection": row.collection,
            "interval_s": row.interval_s,
            "enabled": row.enabled,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "running": holder is not None or self.running(row.name),
            "documents": len(ids),
            "status": row.status or None,
        }

    async def list(self) -> list[dict[str, Any]]:
        return [await self.public(r) for r in await asyncio.to_thread(self.store.connectors.all)]

    async def get(self, name: str) -> dict[str, Any]:
        return await self.public(await self._row(name))

    def _config(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        checked = _check_config(kind, config)
        local = checked.get("path") if kind == "folder" else checked.get("repo")
        roots = [
            Path(r).expanduser().resolve() for r in self.settings.connectors_folder_roots.split(",") if r
        ]
        if roots and local and "://" not in local and "::" not in local and not local.startswith("git@"):
            path = Path(local).expanduser().resolve()
            if not any(path == r or r in path.parents for r in roots):
                allowed = ", ".join(map(str, roots))
                raise BadRequest(f"{path} is outside QS_CONNECTORS_FOLDER_ROOTS ({allowed}).")
        return checked

    async def create(self, body: ConnectorIn) -> dict[str, Any]:
        row = SourceRow(
            name=body.name,
            kind=body.kind,
            config=self._config(body.kind, body.config),
            collection=body.collection,
            interval_s=body.interval_s,
            enabled=body.enabled,
            status={},
            created_at="",
            updated_at="",
        )
        if not await asyncio.to_thread(self.store.connectors.create, row):
            raise BadRequest(
                f"A connector source named {body.name!r} exists; PATCH it or choose another name."
            )
        log.info("connector_created", source=body.name, kind=body.kind)
        return await self.get(body.name)

    async def update(self, name: str, patch: ConnectorPatch) -> dict[str, Any]:
        row = await self._row(name)
        if patch.config is not None:
            row.config = self._config(row.kind, patch.config)
        if patch.collection is not None:
            row.collection = patch.collection
        if patch.interval_s is not None:
            row.interval_s = patch.interval_s
        if patch.enabled is not None:
            row.enabled = patch.enabled
        if not await asyncio.to_thread(self.store.connectors.update, row):
            raise not_found(name)
        return await self.get(name)

    async def delete(self, name: str, keep_documents: bool) -> dict[str, Any]:
        await self._row(name)
        task = self._runs.get(name)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        ids = await asyncio.to_thread(self.store.connectors.document_ids, name)
        deleted = 0
        if not keep_documents:
            for doc_id in ids:
                if await asyncio.to_thread(self.store.delete_document, doc_id, OPERATOR) is not None:
                    deleted += 1
        await asyncio.to_thread(self.store.connectors.delete, name)
        log.info("connector_deleted", source=name, documents_deleted=deleted)
        return {"name": name, "deleted": True, "documents_deleted": deleted}

    # --- runs --------------------------------------------------------------------------------------------

    def running(self, name: str) -> bool:
        task = self._runs.get(name)
        return task is not None and not task.done()

    async def start(self, name: str, trigger: str) -> bool:
        """Start a run of `name` in the background; False when one is going (here, or holding the lease on
        another replica). A `watch` trigger during a run here asks for one more run after it."""
        row = await self._row(name)
        if self.running(name):
            if trigger == "watch":
                self._again.add(name)
            return False
        holder = await asyncio.to_thread(self.store.connectors.lease_holder, name)
        if holder is not None and holder != self.holder:
            return False
        self._runs[name] = asyncio.create_task(self._run(row, trigger), name=f"connector-{name}")
        return True

    async def wait(self, name: str) -> None:
        task = self._runs.get(name)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def _run(self, row: SourceRow, trigger: str) -> RunReport | None:
        report = await self._run_once(row, trigger)
        while row.name in self._again:  # changes seen while it ran: once more, with the config as it is now
            self._again.discard(row.name)
            fresh = await asyncio.to_thread(self.store.connectors.get, row.name)
            if fresh is None or not fresh.enabled:
                break
            row, report = fresh, await self._run_once(fresh, "watch")
        return report

    async def _run_once(self, row: SourceRow, trigger: str) -> RunReport | None:
        table, ttl = self.store.connectors, self.settings.connectors_lease_s
        if not await asyncio.to_thread(table.take_lease, row.name, self.holder, ttl):
            return None  # another replica took it first
        report = RunReport(row.name, trigger)
        heartbeat = asyncio.create_task(self._keep_lease(row.name, ttl))
        try:
            await asyncio.to_thread(table.set_status, row.name, report.public())
            connector = build(row.kind, row.name, row.config, self.context)
            await self.engine.run(row, connector, report)
        except Exception as exc:  # a bug or a store error ends this run, reported; the schedule goes on
            log.exception("connector_run_crashed", source=row.name)
            report.finish(ReasonCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(table.set_status, row.name, report.public()))
                await asyncio.shield(asyncio.to_thread(table.release_lease, row.name, self.holder))
        log.info("connector_run", **{k: v for k, v in report.public().items() if k != "failures"})
        return report

    async def _keep_lease(self, name: str, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await asyncio.to_thread(self.store.connectors.take_lease, name, self.holder, ttl)
            except Exception as exc:  # the store hiccupped: the lease has two more chances before it lapses
                log.warning("connector_lease_renewal_failed", source=name, error=str(exc))

    async def close(self) -> None:
        """Cancel the runs in flight (the lifespan ends); their leases lapse or are released as they stop."""
        tasks = [t for t in self._runs.values() if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

"""The scheduler the QS lifespan runs: every `QS_CONNECTORS_TICK_S` it starts the enabled sources whose
interval has passed since their last run (as the store records it, so replicas agree), and it keeps one
watchfiles watcher per watched folder source, which starts a run when files change. The schedule stays the
safety net for folders whose file system sends no events (some network mounts).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
from pathlib import Path

import structlog
import watchfiles
from cairn_core import CairnError

from cairn_query.connectors.service import ConnectorService
from cairn_query.store.connectors import SourceRow

log = structlog.get_logger("connectors")


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def due(row: SourceRow, now: float) -> bool:
    """Enabled, scheduled, and its interval has passed since its last run ended (or began, for a run that
    never ended: its replica died; the lease decides whether it is still running)."""
    if not row.enabled or row.interval_s <= 0:
        return False
    last = _epoch(row.status.get("finished_at")) or _epoch(row.status.get("started_at"))
    # Stamps have whole seconds: a run that ended at x.9 s reads as x.0, so round the interval up to them.
    return last is None or now - last >= max(1.0, row.interval_s)


class Scheduler:
    def __init__(self, service: ConnectorService) -> None:
        self.service = service
        self._watchers: dict[str, tuple[str, asyncio.Task[None]]] = {}  # source → (its folder, watcher)

    async def run(self) -> None:
        """The lifespan's task: until it is cancelled."""
        tick = self.service.settings.connectors_tick_s
        try:
            while True:
                try:
                    await self._tick()
                except Exception as exc:  # a store hiccup must not end the schedule: the next tick tries
                    log.warning("connector_schedule_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(tick)
        finally:
            for _, task in self._watchers.values():
                task.cancel()
            for _, task in self._watchers.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.service.close()

    async def _tick(self) -> None:
        rows = await asyncio.to_thread(self.service.store.connectors.all)
        now = time.time()
        for row in rows:
            if due(row, now) and not self.service.running(row.name):
                with contextlib.suppress(CairnError):  # deleted since it was listed
                    await self.service.start(row.name, "schedule")
        self._watch(rows)

    def _watch(self, rows: list[SourceRow]) -> None:
        wanted = {
            r.name: str(Path(r.config["path"]).expanduser().resolve())
            for r in rows
            if r.kind == "folder" and r.enabled and r.config.get("watch", True)
        }
        for name, (path, task) in list(self._watchers.items()):
            # Gone, disabled, moved, or its watcher ended (the folder vanished): stop it; restarted below.
            if wanted.get(name) != path or task.done():
                task.cancel()
                del self._watchers[name]
        for name, path in wanted.items():
            if name not in self._watchers and Path(path).is_dir():
                self._watchers[name] = (path, asyncio.create_task(self._watch_one(name, path)))

    async def _watch_one(self, name: str, path: str) -> None:
        debounce = self.service.settings.connectors_watch_debounce_ms
        try:
            async for changes in watchfiles.awatch(path, debounce=debounce, step=50, recursive=True):
                log.debug("connector_folder_changed", source=name, changes=len(changes))
                try:
                    await self.service.start(name, "watch")
                except CairnError:
                    return  # the source was deleted
        except (FileNotFoundError, RuntimeError) as exc:  # the folder went away; the tick restarts us
            log.warning("connector_watch_stopped", source=name, error=f"{type(exc).__name__}: {exc}")

"""A local or mounted folder: every file QS can parse under it, by its path relative to the folder.

An item's version is its stat stamp (mtime in ns and size), so an unchanged file is not even read; a changed
stamp reads the file, and the sync engine still skips the parse and the embedding when its bytes hash the
same. Hidden files and folders (a leading dot: `.git`, editors' swap files) are skipped, and so is every
symbolic link: a link could lead out of the folder the operator named. The scheduler also watches the folder
(watchfiles) when `watch` is on, so a change is synced within a second or so, the schedule being the safety
net for file systems that send no events (some network mounts).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from cairn_query.connectors.base import Context, Item, ScanError, parseable
from cairn_query.store.connectors import ItemRow


class FolderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="the folder, as QS's process sees it")
    include: list[str] = Field(default_factory=list, description="globs on the relative path; empty: all")
    exclude: list[str] = Field(default_factory=list, description="globs on the relative path")
    watch: bool = Field(True, description="sync on file events too, not only on the schedule")
    link: str | None = Field(None, max_length=2000, description="a citation's URL; {path} is replaced")


class FolderConnector:
    kind: ClassVar[str] = "folder"
    Config: ClassVar[type[BaseModel]] = FolderConfig

    def __init__(self, name: str, config: FolderConfig, context: Context) -> None:
        self.name = name
        self.config = config
        self.context = context
        self.root = Path(config.path).expanduser().resolve()

    def _wanted(self, rel: str) -> bool:
        c = self.config
        if c.include and not any(fnmatch.fnmatch(rel, g) for g in c.include):
            return False
        return not any(fnmatch.fnmatch(rel, g) for g in c.exclude) and parseable(rel)

    def _walk(self) -> list[tuple[str, os.stat_result]]:
        if not self.root.is_dir():
            raise ScanError(f"{self.root} is not a folder QS can read.")
        found = []

        def fail(exc: OSError) -> None:
            raise ScanError(f"{exc.filename}: {exc.strerror}")  # a half-listed folder would delete the rest

        for top, dirs, files in os.walk(self.root, onerror=fail):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                path = Path(top, f)
                rel = path.relative_to(self.root).as_posix()
                if f.startswith(".") or path.is_symlink() or not self._wanted(rel):
                    continue
                try:
                    found.append((rel, path.stat()))
                except FileNotFoundError:
                    continue  # deleted while we walked: it is gone
        return found

    async def scan(self, known: Mapping[str, ItemRow]) -> AsyncIterator[Item]:
        for rel, st in await asyncio.to_thread(self._walk):
            item = Item(
                key=rel,
                name=rel,
                version=f"{st.st_mtime_ns}-{st.st_size}",
                modified=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
                url=self.config.link.replace("{path}", rel) if self.config.link else None,
                title=Path(rel).name,
            )
            if st.st_size > self.context.max_bytes:
                item.error = f"The file has {st.st_size} bytes; the limit is {self.context.max_bytes}."
            yield item

    async def fetch(self, item: Item) -> bytes:
        path = self.root / item.key

        def read() -> bytes:
            with path.open("rb") as f:
                data = f.read(self.context.max_bytes + 1)
            if len(data) > self.context.max_bytes:
                raise ValueError(f"The file grew past the limit of {self.context.max_bytes} bytes.")
            return data

        return await asyncio.to_thread(read)

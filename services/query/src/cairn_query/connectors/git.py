"""A Git repository (a URL, or a path on QS's machine): its Markdown, reST and text files at one branch.

Each run fetches the branch's newest commit (depth 1) into a bare repository under the cache folder
(`<QS_CONNECTORS_CACHE_DIR>/git/<source>`), lists that commit's tree, and uses each file's blob id as its
version: Git already hashes every file's content, so an unchanged file costs nothing, not even a read, and a
renamed one keeps its blob id. Only the blobs that changed are read (`git cat-file`).

The `git` command runs with a timeout, no terminal prompt, and only the file, git, ssh and http(s)
transports allowed (`GIT_ALLOW_PROTOCOL`): a URL like `ext::sh -c …` would otherwise run a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cairn_query.connectors.base import Context, Item, ScanError, parseable
from cairn_query.store.connectors import ItemRow

DOCS = ["*.md", "*.markdown", "*.rst", "*.txt"]


class GitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, max_length=2000, description="a clone URL, or a path on QS's machine")
    branch: str | None = Field(None, max_length=200, description="default: the remote's default branch")
    subdir: str = Field("", max_length=1000, description="only files under this folder of the repository")
    include: list[str] = Field(default_factory=lambda: list(DOCS), description="globs on the path")
    exclude: list[str] = Field(default_factory=list)
    link: str | None = Field(
        None, max_length=2000, description="a citation's URL; {path} and {commit} are replaced"
    )

    @field_validator("repo", "branch")
    @classmethod
    def _no_option(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("-"):
            raise ValueError("must not start with '-'")
        return v


class GitConnector:
    kind: ClassVar[str] = "git"
    Config: ClassVar[type[BaseModel]] = GitConfig

    def __init__(self, name: str, config: GitConfig, context: Context) -> None:
        self.name = name
        self.config = config
        self.context = context
        slug = hashlib.sha256(name.encode()).hexdigest()[:12]
        self.dir = context.cache_dir / "git" / f"{name[:40]}-{slug}"
        self.commit = ""

    def _remote(self) -> str:
        repo = self.config.repo
        if "://" in repo or "::" in repo or repo.startswith("git@"):
            return repo  # a URL, or a `transport::address` (GIT_ALLOW_PROTOCOL decides whether it may run)
        return Path(repo).expanduser().resolve().as_uri()  # a local path, as a file:// URL: depth works

    async def _git(self, *args: str, stdin: bytes | None = None) -> bytes:
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": "file:git:ssh:http:https",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            f"--git-dir={self.dir}",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.context.timeout_s)
        except TimeoutError:
            raise ScanError(f"git {args[0]} took longer than {self.context.timeout_s:g} s.") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            raise ScanError(f"git {args[0]} failed: {err.decode('utf-8', 'replace').strip()[-300:]}")
        return out

    async def _update(self) -> None:
        if not (self.dir / "HEAD").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            await self._git("init", "--bare", "--quiet")
            await self._git("remote", "add", "origin", "--", self._remote())
        else:
            await self._git("remote", "set-url", "origin", "--", self._remote())
        ref = self.config.branch or "HEAD"
        await self._git("fetch", "--quiet", "--depth=1", "--no-tags", "origin", ref)
        self.commit = (await self._git("rev-parse", "FETCH_HEAD^{commit}")).decode().strip()

    def _wanted(self, path: str) -> bool:
        c = self.config
        sub = c.subdir.strip("/")
        if sub and not path.startswith(sub + "/"):
            return False
        if c.include and not any(fnmatch.fnmatch(path, g) for g in c.include):
            return False
        return not any(fnmatch.fnmatch(path, g) for g in c.exclude) and parseable(path)

    async def scan(self, known: Mapping[str, ItemRow]) -> AsyncIterator[Item]:
        await self._update()
        tree = await self._git("ls-tree", "-r", "-z", "--long", self.commit)
        for entry in tree.split(b"\0"):
            if not entry:
                continue
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, blob, size = meta.split()
            path = raw_path.decode("utf-8", "replace")
            if kind != b"blob" or mode == b"120000" or not self._wanted(path):
                continue  # submodules, symbolic links, files QS does not read
            item = Item(
                key=path,
                name=path,
                version=blob.decode(),
                url=self._link(path),
                title=Path(path).name,
            )
            if int(size) > self.context.max_bytes:
                item.error = f"The file has {int(size)} bytes; the limit is {self.context.max_bytes}."
            yield item

    def _link(self, path: str) -> str | None:
        link = self.config.link
        return link.replace("{path}", path).replace("{commit}", self.commit) if link else None

    async def fetch(self, item: Item) -> bytes:
        return await self._git("cat-file", "blob", item.version)

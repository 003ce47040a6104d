"""The one interface every connector implements, and the registry that finds a connector by its kind.

A connector knows how to list a source's items and read their bytes; nothing else. What changed, what to
parse, embed, store or delete is decided once, in `sync.py`, for every connector alike. Adding Confluence,
Google Drive or SharePoint is one module with a `Config` model and a class with `scan` and `fetch`, and one
line in `CONNECTORS` (docs/connectors.md, "Writing a connector").
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from cairn_query.corpus.parsing import SUPPORTED
from cairn_query.store.connectors import ItemRow

# kind → "module:Class", imported when a source of that kind is first used (uvicorn's importer pattern).
CONNECTORS: dict[str, str] = {
    "folder": "cairn_query.connectors.folder:FolderConnector",
    "website": "cairn_query.connectors.website:WebsiteConnector",
    "git": "cairn_query.connectors.git:GitConnector",
}


class ScanError(Exception):
    """The source as a whole could not be listed (folder gone, site or remote unreachable). The run fails and
    nothing is deleted: an unreachable source is not an empty one."""


@dataclass
class Item:
    """One thing a source holds, as its connector sees it."""

    key: str  # stable within the source: a relative path, a URL
    name: str  # a file name with its extension: how the parser tells its kind
    version: str  # a cheap change token (stat stamp, blob id, content hash); same as stored → unchanged
    modified: str | None = None  # ISO-8601, when the source says
    url: str | None = None  # where a citation links to
    title: str | None = None  # used when the file names none itself
    content_type: str | None = None
    data: bytes | None = None  # already read while scanning (a crawled page); else `fetch` reads it
    state: dict[str, Any] = field(default_factory=dict)  # the connector's memory of it (ETag, links)
    metadata: dict[str, str] = field(default_factory=dict)  # added to the document's metadata
    error: str | None = None  # unreadable this run: what is stored stays, the run reports it

    @property
    def kind(self) -> str:
        return Path(self.name).suffix.lower() or (self.content_type or "")


@dataclass(frozen=True)
class Context:
    """What connectors get from the service's settings."""

    cache_dir: Path  # each connector's working files (git clones) go under cache_dir/<kind>/<source>
    max_bytes: int  # larger items are reported as failed, never read whole
    timeout_s: float  # one network or git call
    user_agent: str


class Connector(Protocol):
    kind: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def scan(self, known: Mapping[str, ItemRow]) -> AsyncIterator[Item]:
        """Every item the source holds now; `known` is what the store holds (for conditional requests).
        Raises ScanError when the source cannot be listed at all."""
        ...

    async def fetch(self, item: Item) -> bytes:
        """The item's bytes (called only for items whose `version` changed and that carry no `data`)."""
        ...


def connector_class(kind: str) -> type[Connector]:
    target = CONNECTORS.get(kind)
    if target is None:
        raise KeyError(kind)
    module, _, name = target.partition(":")
    cls: type[Connector] = getattr(importlib.import_module(module), name)
    return cls


def build(kind: str, name: str, config: dict[str, Any], context: Context) -> Connector:
    cls = connector_class(kind)
    return cls(name, cls.Config.model_validate(config), context)  # type: ignore[call-arg]


def parseable(path: str) -> bool:
    """Whether QS can read a file of this name (corpus/parsing.py's types: a new format there is synced too)."""
    return Path(path).suffix.lower() in SUPPORTED

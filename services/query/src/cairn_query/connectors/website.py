"""A website: pages crawled from a start URL, or listed by a sitemap, on the start's host only.

- robots.txt is read first (urllib.robotparser) and obeyed: a disallowed URL is never requested, and its
  Crawl-delay (capped at 10 s) spaces the requests. A robots.txt that answers 5xx or not at all stops the
  run (RFC 9309 reads that as "disallow all"); a 404 allows all.
- Links are followed breadth first up to `max_depth` clicks from the start, at most `max_pages` pages a run,
  never to another host or outside `path_prefix`. Redirects are followed on the same host only.
- A page already stored is asked for again with its ETag and Last-Modified (a conditional GET): a 304 costs
  no body, and its links are the ones remembered from last time. A 200 is compared by content hash in the
  sync engine, so a server without validators still costs no parse and no embedding for an unchanged page.
- A page that answers 404 or 410 is gone (its document is deleted); any other failure keeps what is stored.
Links are found with one linear regular expression over `href=` attributes rather than an HTML parser: the
page itself is parsed (to text) only in the sandboxed parser process, where a crafted page can do no harm.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from typing import Any, ClassVar
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cairn_query.connectors.base import Context, Item, ScanError, parseable
from cairn_query.store.connectors import ItemRow

_HREF = re.compile(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_LOC = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>", re.IGNORECASE)
_ASSETS = {".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".woff", ".woff2", ".zip"}
_MAX_LINKS = 500  # per page, remembered for conditional requests
_MAX_REDIRECTS = 5
_MAX_DELAY_S = 10.0


class WebsiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    sitemap_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    max_pages: int = Field(200, ge=1, le=10_000)
    max_depth: int = Field(3, ge=0, le=20)
    path_prefix: str = Field("", max_length=1000, description="only URLs whose path starts with this")

    @model_validator(mode="after")
    def _one_start(self) -> WebsiteConfig:
        if not (self.start_url or self.sitemap_url):
            raise ValueError("give start_url or sitemap_url")
        return self


class _Gone(Exception):
    """404 or 410: the page no longer exists."""


class WebsiteConnector:
    kind: ClassVar[str] = "website"
    Config: ClassVar[type[BaseModel]] = WebsiteConfig

    def __init__(self, name: str, config: WebsiteConfig, context: Context) -> None:
        self.name = name
        self.config = config
        self.context = context
        first = urlsplit(config.start_url or config.sitemap_url or "")
        self.origin = f"{first.scheme}://{first.netloc}"
        self.host = first.netloc.lower()

    def _ours(self, url: str) -> bool:
        parts = urlsplit(url)
        return (
            parts.scheme in ("http", "https")
            and parts.netloc.lower() == self.host
            and parts.path.startswith(self.config.path_prefix)
            and PurePosixPath(parts.path).suffix.lower() not in _ASSETS
        )

    async def _robots(self, client: httpx.AsyncClient) -> RobotFileParser:
        robots = RobotFileParser()
        try:
            resp = await client.get(f"{self.origin}/robots.txt")
        except httpx.HTTPError as exc:
            raise ScanError(f"{self.origin}/robots.txt could not be read: {type(exc).__name__}.") from None
        if resp.status_code >= 500:
            raise ScanError(f"{self.origin}/robots.txt answered {resp.status_code}: nothing may be crawled.")
        # No robots.txt (4xx): no rules, everything allowed.
        robots.parse(resp.text.splitlines() if resp.status_code < 400 else [])
        return robots

    async def _sitemap(self, client: httpx.AsyncClient, url: str, nested: int = 0) -> list[str]:
        try:
            resp = await client.get(url)
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise ScanError(f"The sitemap {url} could not be read: {exc}") from None
        locs = [u for u in _LOC.findall(resp.text) if urlsplit(u).netloc.lower() == self.host]
        if "<sitemapindex" in resp.text[:2000] and nested == 0:
            pages: list[str] = []
            for child in locs[:50]:
                pages += await self._sitemap(client, child, 1)
            return pages
        return [u for u in locs if self._ours(u)]

    async def scan(self, known: Mapping[str, ItemRow]) -> AsyncIterator[Item]:
        c = self.config
        headers = {"User-Agent": self.context.user_agent}
        async with httpx.AsyncClient(timeout=self.context.timeout_s, headers=headers) as client:
            robots = await self._robots(client)
            delay = min(float(robots.crawl_delay(self.context.user_agent) or 0), _MAX_DELAY_S)
            starts = await self._sitemap(client, c.sitemap_url) if c.sitemap_url else []
            if c.start_url:
                starts.insert(0, urldefrag(c.start_url).url)
            queue = deque((u, 0) for u in starts)
            queued, pages = {u for u, _ in queue}, 0
            while queue and pages < c.max_pages:
                url, depth = queue.popleft()
                if not robots.can_fetch(self.context.user_agent, url):
                    continue
                item = await self._page(client, url, known.get(url), first=pages == 0)
                pages += 1
                if item is not None:
                    yield item
                    for link in item.state.get("links", []) if depth < c.max_depth else []:
                        if link not in queued:
                            queued.add(link)
                            queue.append((link, depth + 1))
                if delay:
                    await asyncio.sleep(delay)

    async def _page(
        self, client: httpx.AsyncClient, url: str, prev: ItemRow | None, first: bool
    ) -> Item | None:
        state: dict[str, Any] = prev.state if prev is not None and prev.present else {}
        conditional = {
            k: v
            for k, v in (("If-None-Match", state.get("etag")), ("If-Modified-Since", state.get("modified")))
            if v
        }
        try:
            resp = await self._get(client, url, conditional)
        except _Gone:
            return None
        except (httpx.HTTPError, ScanError) as exc:
            if first:  # the start itself: the site is down, and a run must not read that as "empty"
                raise ScanError(f"{url} could not be read: {exc}") from None
            return Item(
                key=url, name=_name(url, None), version="", url=url, error=f"{type(exc).__name__}: {exc}"
            )
        if resp.status_code == 304 and prev is not None:
            return Item(key=url, name=_name(url, "text/html"), version=prev.version, url=url, state=state)
        body = resp.content[: self.context.max_bytes + 1]
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        name = _name(url, ctype)
        if not parseable(name):
            return None  # an image or an archive: not a document
        links = self._links(url, body) if ctype in ("text/html", "application/xhtml+xml") else []
        item = Item(
            key=url,
            name=name,
            version=hashlib.sha256(body).hexdigest(),
            modified=resp.headers.get("last-modified"),
            url=url,
            content_type=ctype or None,
            data=body,
            state={
                "etag": resp.headers.get("etag"),
                "modified": resp.headers.get("last-modified"),
                "links": links,
            },
        )
        if len(body) > self.context.max_bytes:
            item.data, item.error = None, f"The page is larger than {self.context.max_bytes} bytes."
        return item

    async def _get(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
        for _ in range(_MAX_REDIRECTS + 1):
            resp = await client.get(url, headers=headers)
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                url = urljoin(url, resp.headers["location"])
                if not self._ours(url):
                    raise _Gone()  # it moved off the host (or out of the prefix): not ours any more
                continue
            if resp.status_code in (404, 410):
                raise _Gone()
            if resp.status_code not in (200, 304):
                raise ScanError(f"HTTP {resp.status_code}")
            return resp
        raise ScanError(f"more than {_MAX_REDIRECTS} redirects")

    def _links(self, base: str, body: bytes) -> list[str]:
        text = body.decode("utf-8", "replace")
        out: dict[str, None] = {}
        for m in _HREF.finditer(text):
            href = (m.group(1) or m.group(2) or m.group(3) or "").strip()
            url = urldefrag(urljoin(base, href)).url
            if href and self._ours(url) and url != base:
                out[url] = None
                if len(out) >= _MAX_LINKS:
                    break
        return list(out)

    async def fetch(self, item: Item) -> bytes:
        raise ScanError("pages are read while crawling")  # an item without data had an error: never fetched


def _name(url: str, ctype: str | None) -> str:
    """A file name for the parser: the URL's last segment, `.html` added for an HTML page without one."""
    last = PurePosixPath(urlsplit(url).path).name or "index"
    if ctype in (None, "text/html", "application/xhtml+xml") and not last.lower().endswith((".html", ".htm")):
        return f"{last}.html"
    if ctype == "text/plain" and "." not in last:
        return f"{last}.txt"
    return last

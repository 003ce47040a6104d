"""Uploaded files to text, without letting one file take QS from everyone else.

Plain text is decoded in process (linear, in C). Every other format (Markdown, reStructuredText, HTML, and
the formats of `formats/`: Word, PowerPoint, Excel, CSV, PDF, images) goes to `parse_worker`, one child
process per file, under a time limit (`QS_PARSE_TIMEOUT_S`, then the child is killed), a memory limit
(`QS_PARSE_MEMORY_MB`) and a semaphore (`QS_PARSE_CONCURRENCY`), so crafted files queue up behind each other
instead of filling the thread pool that every store call runs in. PDFs and images may need OCR, which takes
seconds a page and loads its models: they run under the OCR limits instead (`QS_OCR_TIMEOUT_S`,
`QS_OCR_MEMORY_MB`). The wait is on pipes in the event loop; no thread is held while a child parses. Past a
limit the file is refused: 422 DOCUMENT_TOO_COMPLEX.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import sys
from dataclasses import dataclass

import structlog
from cairn_core import BadRequest, ReasonCode

from cairn_query.corpus.extract import ExtractError, extract_file
from cairn_query.corpus.formats import BY_KIND, FORMATS, ReadOptions
from cairn_query.settings import QuerySettings

log = structlog.get_logger("parsing")

SUPPORTED = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    **{ext: f.kind for f in FORMATS for ext in f.extensions},
}
_CONTENT_TYPES = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/x-rst": "rst",
    "text/html": "html",
    **{ctype: f.kind for f in FORMATS for ctype in f.content_types},
}
# What the refusal of an unsupported file lists (the page's file picker accepts the same).
ACCEPTED = ", ".join(SUPPORTED)


def kind_of(filename: str, content_type: str | None) -> str:
    name = filename.lower()
    for ext, kind in SUPPORTED.items():
        if name.endswith(ext):
            return kind
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _CONTENT_TYPES and "." not in name:
        return _CONTENT_TYPES[ctype]
    raise BadRequest(
        f"Unsupported file type {filename!r}; upload {ACCEPTED}.", ReasonCode.UNSUPPORTED_MEDIA_TYPE
    )


# Kept as uploaded (store `originals`), so that a citation opens the file at its page: what browsers show.
KEEP_ORIGINAL = {"pdf": "application/pdf"}


def original_of(filename: str, content_type: str | None, data: bytes, limit: int) -> tuple[str, bytes] | None:
    """(content type, bytes) to keep of an upload: a PDF of at most `limit` bytes (QS_MAX_ORIGINAL_BYTES)."""
    kind = kind_of(filename, content_type)
    if kind in KEEP_ORIGINAL and len(data) <= limit:
        return KEEP_ORIGINAL[kind], data
    return None


def _too_complex(filename: str, why: str) -> BadRequest:
    return BadRequest(
        f"{filename!r} was not stored: {why} Convert it to plain text or split it.",
        ReasonCode.DOCUMENT_TOO_COMPLEX,
    )


@dataclass(frozen=True)
class OcrLimits:
    """OCR's own limits (QS_OCR_*): a page takes seconds and the models about 700 MB of memory."""

    enabled: bool = True
    timeout_s: float = 120.0
    memory_mb: int = 3072
    threads: int = 2
    max_pages: int = 50


class FileParser:
    def __init__(
        self, timeout_s: float, memory_mb: int, concurrency: int, ocr: OcrLimits | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.ocr = ocr or OcrLimits()
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    def from_settings(cls, s: QuerySettings) -> FileParser:
        ocr = OcrLimits(s.ocr_enabled, s.ocr_timeout_s, s.ocr_memory_mb, s.ocr_threads, s.ocr_max_pages)
        return cls(s.parse_timeout_s, s.parse_memory_mb, s.parse_concurrency, ocr)

    async def extract(self, filename: str, content_type: str | None, data: bytes) -> tuple[str, str | None]:
        """(text, title found in the file or None); 4xx with a reason code for a file that cannot be read."""
        kind = kind_of(filename, content_type)
        if kind == "image" and not self.ocr.enabled:
            raise BadRequest(
                f"{filename!r} is an image, and reading images needs OCR, which is off (QS_OCR_ENABLED).",
                ReasonCode.UNSUPPORTED_MEDIA_TYPE,
            )
        try:
            if kind == "text":
                return extract_file(kind, data)
        except ExtractError as exc:
            raise BadRequest(f"{filename!r}: {exc}") from None
        async with self._slots:
            out = await self._run(filename, kind, data)
        if "error" in out:
            if out.get("kind") == "too_complex":
                raise _too_complex(filename, str(out["error"]))
            raise BadRequest(f"{filename!r}: {out['error']}")
        title = out.get("title")
        return str(out["text"]), str(title) if title else None

    def limits(self, kind: str) -> tuple[float, int]:
        """(seconds, MB) that reading a file of `kind` may take: the OCR limits where it may run OCR."""
        fmt = BY_KIND.get(kind)
        if fmt is not None and fmt.ocr and self.ocr.enabled:
            return max(self.timeout_s, self.ocr.timeout_s), max(self.memory_mb, self.ocr.memory_mb)
        return self.timeout_s, self.memory_mb

    async def _run(self, filename: str, kind: str, data: bytes) -> dict[str, object]:
        timeout_s, memory_mb = self.limits(kind)
        # The CPU limit counts every thread's time: OCR runs on `threads` of them.
        cpu_s = math.ceil(timeout_s) * (self.ocr.threads if timeout_s > self.timeout_s else 1) + 1
        options = ReadOptions(self.ocr.enabled, self.ocr.threads, self.ocr.max_pages)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cairn_query.corpus.parse_worker",
            kind,
            str(memory_mb),
            str(cpu_s),
            json.dumps(dataclasses.asdict(options)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(data), timeout_s)
        except TimeoutError:
            log.warning("parse_timeout", filename=filename, kind=kind, timeout_s=timeout_s)
            raise _too_complex(filename, f"reading it took longer than {timeout_s:g} s.") from None
        finally:
            # Timed out, or the request was cancelled (the client went away): the child must not outlive it.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            # Killed by a limit (SIGXCPU, SIGKILL) or died allocating: the file is too much to read.
            log.warning(
                "parse_failed",
                filename=filename,
                kind=kind,
                returncode=proc.returncode,
                stderr=stderr[-500:].decode("utf-8", "replace"),
            )
            return {"error": "reading it passed the parser's memory or CPU limit.", "kind": "too_complex"}
        if stderr:
            log.warning(
                "parse_worker_stderr", filename=filename, stderr=stderr[-500:].decode("utf-8", "replace")
            )
        try:
            out = json.loads(stdout)
        except ValueError:
            out = None
        if not isinstance(out, dict):
            return {"error": "The file could not be read.", "kind": "unreadable"}
        return out

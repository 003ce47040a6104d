"""Uploaded files to text, without letting one file take QS from everyone else.

Plain text is decoded in process (linear, in C). Markdown, reStructuredText, HTML and PDF go to
`parse_worker`, one child process per file, under a time limit (`QS_PARSE_TIMEOUT_S`, then the child is killed), a memory limit
(`QS_PARSE_MEMORY_MB`) and a semaphore (`QS_PARSE_CONCURRENCY`), so crafted files queue up behind each other
instead of filling the thread pool that every store call runs in. The wait is on pipes in the event loop; no
thread is held while a child parses. Past a limit the file is refused: 422 DOCUMENT_TOO_COMPLEX.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys

import structlog
from cairn_core import BadRequest, ReasonCode

from cairn_query.corpus.extract import ExtractError, extract_file

log = structlog.get_logger("parsing")

SUPPORTED = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_CONTENT_TYPES = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/x-rst": "rst",
    "text/html": "html",
    "application/pdf": "pdf",
}


def kind_of(filename: str, content_type: str | None) -> str:
    name = filename.lower()
    for ext, kind in SUPPORTED.items():
        if name.endswith(ext):
            return kind
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _CONTENT_TYPES and "." not in name:
        return _CONTENT_TYPES[ctype]
    raise BadRequest(
        f"Unsupported file type {filename!r}; upload .txt, .md, .rst, .html or .pdf.",
        ReasonCode.UNSUPPORTED_MEDIA_TYPE,
    )


def _too_complex(filename: str, why: str) -> BadRequest:
    return BadRequest(
        f"{filename!r} was not stored: {why} Convert it to plain text or split it.",
        ReasonCode.DOCUMENT_TOO_COMPLEX,
    )


class FileParser:
    def __init__(self, timeout_s: float, memory_mb: int, concurrency: int) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self._slots = asyncio.Semaphore(concurrency)

    async def extract(self, filename: str, content_type: str | None, data: bytes) -> tuple[str, str | None]:
        """(text, title found in the file or None); 4xx with a reason code for a file that cannot be read."""
        kind = kind_of(filename, content_type)
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

    async def _run(self, filename: str, kind: str, data: bytes) -> dict[str, object]:
        cpu_s = math.ceil(self.timeout_s) + 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cairn_query.corpus.parse_worker",
            kind,
            str(self.memory_mb),
            str(cpu_s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(data), self.timeout_s)
        except TimeoutError:
            log.warning("parse_timeout", filename=filename, kind=kind, timeout_s=self.timeout_s)
            raise _too_complex(filename, f"reading it took longer than {self.timeout_s:g} s.") from None
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

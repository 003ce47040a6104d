"""Readers of the upload formats that need a library: Word, PowerPoint, Excel and CSV, PDF (text, tables
and scanned pages) and images (OCR). One module per format, each a function `read(data, options) ->
(text, title or None)` that writes the normalised form (`normalise.py`): `#` headings, paragraphs, table
rows with their column names (`tables.py`) and page or slide breaks, so that every chunk knows its page.

Readers run only in the parse worker (`parse_worker.py`), under its time and memory limits, and are imported
there by name (`Format.reader`), so a text upload never imports python-docx or ONNX Runtime. A file that
cannot be read as its type raises `ExtractError`, whose message the uploader sees.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ReadOptions:
    """What the parent passes the worker (QS settings, `parse_worker` argv): OCR on or off, its threads and
    how many pages of one file it reads at most (past that, scanned pages are left out)."""

    ocr: bool = True
    ocr_threads: int = 2
    ocr_max_pages: int = 50


class Reader(Protocol):
    def __call__(self, data: bytes, options: ReadOptions) -> tuple[str, str | None]: ...


@dataclass(frozen=True)
class Format:
    kind: str
    extensions: tuple[str, ...]
    content_types: tuple[str, ...]
    reader: str  # "module:function" under this package, imported when a file of this kind is read
    ocr: bool = False  # reading may run OCR: the parent gives it the OCR limits (QS_OCR_TIMEOUT_S, …)


_XML = "application/vnd.openxmlformats-officedocument"
FORMATS = (
    Format("docx", (".docx",), (f"{_XML}.wordprocessingml.document",), "word:read"),
    Format("pptx", (".pptx",), (f"{_XML}.presentationml.presentation",), "slides:read"),
    Format("xlsx", (".xlsx", ".xlsm"), (f"{_XML}.spreadsheetml.sheet",), "sheets:read_xlsx"),
    Format("csv", (".csv", ".tsv"), ("text/csv", "text/tab-separated-values"), "sheets:read_csv"),
    Format("pdf", (".pdf",), ("application/pdf",), "pdf:read", ocr=True),
    Format(
        "image",
        (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"),
        ("image/png", "image/jpeg", "image/tiff", "image/webp"),
        "image:read",
        ocr=True,
    ),
)
BY_KIND = {f.kind: f for f in FORMATS}


def read(kind: str, data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    module, function = BY_KIND[kind].reader.split(":")
    reader: Reader = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return reader(data, options)

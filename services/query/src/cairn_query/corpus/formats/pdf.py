"""PDF: each page's text by PDFium (pypdfium2, in C: 50 pages in 0.1 s), its ruled tables by pdfplumber, and a
scanned page by OCR (`ocr.py`); every chunk carries its page number.

pdfplumber (pdfminer.six, pure Python) reads a page about a hundred times slower than PDFium, so it reads only
the pages that can hold a table: those with at least `RULED` lines or rectangles (a table drawn with rules; a
page of prose has none, a header rule one or two). There a ruled table becomes rows with their column names
(`tables.py`, the first row the header), and the text above, beside and below it is kept band by band down the
page; a table laid out by spacing alone reads as text lines. A page with under `SCANNED_BELOW` characters of
text and an image is taken for a scan: rendered at `OCR_DPI` by PDFium and read by OCR.
"""

from __future__ import annotations

import io
from typing import Any

from cairn_query.corpus.extract import ExtractError
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.ocr import Ocr
from cairn_query.corpus.formats.tables import table_rows
from cairn_query.corpus.normalise import page_line

SCANNED_BELOW = 20
OCR_DPI = 200  # what OCR reads small print at; an A4 page is then 1654 x 2339 pixels
RULED = 4  # path objects (lines, rectangles) on a page before pdfplumber looks for tables there


class _Pages:
    """The document open in PDFium, and in pdfplumber once a page needs it."""

    def __init__(self, data: bytes, options: ReadOptions) -> None:
        import pypdfium2 as pdfium

        self.data = data
        self.options = options
        try:
            self.pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise ExtractError("The PDF is encrypted; upload an unencrypted copy.") from None
            raise ExtractError(f"The PDF could not be read: {str(exc).rstrip('.')}.") from None
        self._plumber: Any = None
        self._ocr: Ocr | None = None
        self.scanned = 0

    def close(self) -> None:
        if self._plumber is not None:
            self._plumber.close()
        self.pdf.close()

    def text(self, index: int) -> str:
        import pypdfium2.raw as pdfium_c

        page = self.pdf[index]
        try:
            text = page.get_textpage().get_text_range().replace("\r\n", "\n").strip()
            if len(list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH]))) >= RULED:
                text = self._with_tables(index) or text
            if len(text) < SCANNED_BELOW and self.options.ocr and self._has_image(page):
                self.scanned += 1
                if self.scanned <= self.options.ocr_max_pages:
                    self._ocr = self._ocr or Ocr(self.options.ocr_threads)
                    image = page.render(scale=OCR_DPI / 72).to_pil()
                    text = "\n\n".join(self._ocr.paragraphs(image))
            return text
        finally:
            page.close()

    def _has_image(self, page: Any) -> bool:
        import pypdfium2.raw as pdfium_c

        return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))

    def _with_tables(self, index: int) -> str | None:
        """The page's text with its ruled tables as rows, by pdfplumber; None when it finds no table."""
        import pdfplumber

        if self._plumber is None:
            self._plumber = pdfplumber.open(io.BytesIO(self.data))
        page = self._plumber.pages[index]
        try:
            tables = sorted(page.find_tables(), key=lambda t: t.bbox[1])
            return _banded(page, tables) if tables else None
        finally:
            page.close()  # frees the page's parsed objects


def read(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    from pdfplumber.utils.exceptions import PdfminerException

    pages = _Pages(data, options)
    out: list[str] = []
    try:
        title = _title(pages.pdf.get_metadata_dict())
        for index in range(len(pages.pdf)):
            text = pages.text(index)
            if text:
                out += [page_line(index + 1), text]
    except PdfminerException as exc:  # pdfplumber failed on a page PDFium could read
        raise ExtractError(
            f"The PDF could not be read: {type(exc.args[0] if exc.args else exc).__name__}."
        ) from None
    finally:
        pages.close()
    return "\n\n".join(out), title


def _title(metadata: dict[str, Any]) -> str | None:
    title = " ".join(str(metadata.get("Title") or "").split())
    # Writers that are given no title put their own placeholder there.
    return None if title.lower() in ("", "untitled", "untitled document") else title


def _banded(page: Any, tables: list[Any]) -> str:
    """The text above the first table, the table's rows, the text from the table's top to the next table's
    (beside and below it), and so on down the page."""
    boxes = [t.bbox for t in tables]
    edges = [page.bbox[1], *(box[1] for box in boxes), page.bbox[3] + 1]
    parts = [_text(_band(page, boxes, edges[0], edges[1]))]
    for i, table in enumerate(tables):
        parts += table_rows(table.extract())
        parts.append(_text(_band(page, boxes, edges[i + 1], edges[i + 2])))
    return "\n\n".join(p for p in parts if p.strip())


def _band(page: Any, tables: list[tuple[float, float, float, float]], top: float, bottom: float) -> Any:
    """The page's objects whose middle is in [top, bottom) and in no table (a crop would keep the objects
    that only touch the band, and repeat a line above a table below it)."""

    def keep(obj: dict[str, Any]) -> bool:
        if "x0" not in obj or "top" not in obj:
            return True
        x, y = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return top <= y < bottom and not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in tables)

    return page.filter(keep)


def _text(page: Any) -> str:
    return str(page.extract_text() or "").strip()

"""PDF by pdfplumber (pdfminer.six): each page's text and ruled tables, in the order they stand on the page,
with the page number on every chunk; a page with no text layer but an image (a scan) is rendered
(pypdfium2) and read by OCR (`ocr.py`).

Tables are found from their ruling lines (pdfplumber's "lines" strategy): a table drawn with lines becomes
rows with their column names (`tables.py`), the header being its first row; a table laid out by spacing
alone reads as text lines, as before. The text beside or between tables is kept, band by band down the page.
"""

from __future__ import annotations

import io
from typing import Any

from cairn_query.corpus.extract import ExtractError
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.ocr import Ocr
from cairn_query.corpus.formats.tables import table_rows
from cairn_query.corpus.normalise import page_line

# A page with fewer characters of text than this and an image on it is taken for a scan.
SCANNED_BELOW = 20
OCR_DPI = 200  # what OCR reads small print at; an A4 page is then 1654 x 2339 pixels


def read(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    import pdfplumber
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfminer.psparser import PSException
    from pdfplumber.utils.exceptions import PdfminerException

    out: list[str] = []
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            title = _title(pdf.metadata)
            ocr: Ocr | None = None
            scanned = 0
            for number, page in enumerate(pdf.pages, 1):
                text = _page_text(page)
                if len(text.strip()) < SCANNED_BELOW and page.images and options.ocr:
                    scanned += 1
                    if scanned <= options.ocr_max_pages:
                        ocr = ocr or Ocr(options.ocr_threads)
                        text = "\n\n".join(ocr.paragraphs(page.to_image(resolution=OCR_DPI).original))
                if text.strip():
                    out += [page_line(number), text]
                page.close()  # frees the page's parsed objects: a long PDF is read in the memory of one page
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise ExtractError("The PDF is encrypted; upload an unencrypted copy.") from None
    except (PdfminerException, PDFSyntaxError, PSException, ValueError, KeyError, TypeError) as exc:
        cause = exc.args[0] if isinstance(exc, PdfminerException) and exc.args else exc
        if isinstance(cause, PDFPasswordIncorrect | PDFEncryptionError):
            raise ExtractError("The PDF is encrypted; upload an unencrypted copy.") from None
        raise ExtractError(f"The PDF could not be read: {type(cause).__name__}.") from None
    return "\n\n".join(out), title


def _title(metadata: dict[str, Any]) -> str | None:
    title = metadata.get("Title")
    if isinstance(title, bytes):
        title = title.decode("utf-8", "replace")
    if not isinstance(title, str):
        return None
    title = " ".join(title.split())
    # Writers that are given no title put their own placeholder there.
    return None if title.lower() in ("", "untitled", "untitled document") else title


def _page_text(page: Any) -> str:
    """The page's text and tables top to bottom: the text above the first table, the table's rows, the text
    from the table's top to the next table's (beside and below it), and so on."""
    tables = sorted(page.find_tables(), key=lambda t: t.bbox[1])
    if not tables:
        return _text(page)
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

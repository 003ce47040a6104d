"""Word (.docx) by python-docx: headings become the section path, list items keep their bullet or number,
tables become rows with their column names; headers, footers and comments are left out (they repeat on
every page and say nothing about the body). A .docx has no fixed pages, so its chunks have none."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from cairn_query.corpus.extract import ExtractError
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.tables import table_rows

_HEADING = re.compile(r"^Heading (\d)$")


def read(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ExtractError(f"The Word file could not be read: {type(exc).__name__}.") from None
    out: list[str] = []
    title = (document.core_properties.title or "").strip() or None
    number = 0  # the next item of a numbered list; 0 outside one
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            out += table_rows(_cells(block))
            number = 0
            continue
        text = " ".join(block.text.split())
        style = block.style.name if block.style is not None else ""
        if not text:
            continue
        if style == "Title":
            title = title or text
            continue
        if heading := _HEADING.match(style):
            out.append("#" * min(int(heading.group(1)), 6) + " " + text)
        elif style.startswith("List Number"):
            number += 1
            out.append(f"{number}. {text}")
            continue
        elif style.startswith("List") or _numbered(block):
            out.append(f"- {text}")
        else:
            out.append(text)
        number = 0
    return "\n\n".join(out), title


def _cells(table: Any) -> list[list[str]]:
    """The table's cells by row; a merged cell, which python-docx repeats across its span, counted once."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        last = None
        for cell in row.cells:
            if cell._tc is not last:
                cells.append(cell.text)
            last = cell._tc
        rows.append(cells)
    return rows


def _numbered(paragraph: Any) -> bool:
    """A list item made by direct formatting (numbering properties) rather than a List style."""
    ppr = paragraph._p.pPr
    return ppr is not None and ppr.numPr is not None

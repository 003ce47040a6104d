"""Excel (.xlsx) by openpyxl and CSV by the standard library: each sheet is a section (its name the heading)
holding one table, whose first non-empty row is the header; every row is written with its column names
("Region: North; Q3 revenue: 4.2 M"), so a chunk holding row 70 still says what its numbers are.

Cells are read as values (`data_only`: a formula's last computed result, as Excel shows it); a workbook
saved by a program that does not compute formulas has none, and those cells are empty.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

from cairn_query.corpus.extract import ExtractError, decode_text
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.tables import table_rows


def read_xlsx(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        # read_only streams rows instead of building every cell object: a large sheet stays small in memory.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ExtractError(f"The Excel file could not be read: {type(exc).__name__}.") from None
    out: list[str] = []
    try:
        for sheet in book.worksheets:
            rows = table_rows([_value(v) for v in row] for row in sheet.iter_rows(values_only=True))
            if rows:
                out += [f"# {' '.join(sheet.title.split())}", *rows]
        title = (book.properties.title or "").strip() or None
    finally:
        book.close()
    return "\n\n".join(out), title


def read_csv(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    text = decode_text(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # one column, or too little to tell: commas
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        raise ExtractError(f"The CSV file could not be read: {exc}.") from None
    return "\n\n".join(table_rows(rows)), None


def _value(value: object) -> object:
    """A date as a date (no "00:00:00" when it has no time of day); other values as they are."""
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value

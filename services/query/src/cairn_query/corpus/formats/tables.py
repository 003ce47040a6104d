"""A table as text that keeps each row with its column names: "Region: North; Q3 revenue: 4.2 M".

A row read alone (a chunk, a quote, a sentence vector) must still say what its numbers are, so every
row names its columns, the header's cells, and is a line of its own marked for the chunker, which keeps it
whole (`normalise.ROW_MARK`). Empty cells are left out; a header cell that is empty becomes "Column N".
Standard library only: every reader imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cairn_query.corpus.normalise import ROW_MARK


def cell_text(value: object) -> str:
    """A cell as one line: None is empty; an integral float ("4.0" from a spreadsheet) loses its ".0"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def table_rows(rows: Iterable[Sequence[object]]) -> list[str]:
    """The table's rows, header first, as marked lines (one paragraph each in the text), the header used
    for the names; a table of one row is that row's cells."""
    cells = [[cell_text(c) for c in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return []
    header, body = cells[0], cells[1:]
    if not body:
        return [ROW_MARK + "; ".join(c for c in header if c)]
    out = []
    for row in body:
        pairs = [f"{_name(header, i)}: {value}" for i, value in enumerate(row) if value]
        if pairs:
            out.append(ROW_MARK + "; ".join(pairs))
    return out


def _name(header: Sequence[str], i: int) -> str:
    return header[i] if i < len(header) and header[i] else f"Column {i + 1}"

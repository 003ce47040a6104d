"""PowerPoint (.pptx) by python-pptx: each slide is a page (its chunks carry the slide number), under its
title as the section path ("Slide N" when it has none); its text boxes and tables in order, then its
speaker notes under "Speaker notes", which are often where the explanation is."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from cairn_query.corpus.extract import ExtractError
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.tables import table_rows
from cairn_query.corpus.normalise import page_line

NOTES_HEADING = "Speaker notes"


def read(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    try:
        deck = Presentation(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ExtractError(f"The PowerPoint file could not be read: {type(exc).__name__}.") from None
    out: list[str] = []
    first_title = None
    for number, slide in enumerate(deck.slides, 1):
        title_shape = slide.shapes.title
        title = _one_line(title_shape.text_frame.text) if title_shape is not None else ""
        first_title = first_title or title or None
        out += [page_line(number), f"# {title or f'Slide {number}'}"]
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            out += _shape_text(shape)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = _paragraphs(slide.notes_slide.notes_text_frame)
            if notes:
                out += [f"## {NOTES_HEADING}", *notes]
    return "\n\n".join(out), (deck.core_properties.title or "").strip() or first_title


def _shapes(shapes: Any) -> Iterator[Any]:
    """Every shape, groups opened, top to bottom then left to right (the order a reader takes)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _shape_text(shape: Any) -> list[str]:
    if getattr(shape, "has_table", False) and shape.has_table:
        return table_rows([[cell.text for cell in row.cells] for row in shape.table.rows])
    if shape.has_text_frame:
        return _paragraphs(shape.text_frame)
    return []


def _paragraphs(frame: Any) -> list[str]:
    return [text for p in frame.paragraphs if (text := _one_line("".join(r.text for r in p.runs)))]


def _one_line(text: str) -> str:
    return " ".join(text.split())

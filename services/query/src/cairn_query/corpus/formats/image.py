"""Images (PNG, JPEG, TIFF, WebP) by OCR (`ocr.py`): each frame of a multi-page TIFF is a page, so a
scanned document's chunks carry their page numbers like a PDF's."""

from __future__ import annotations

import io

from cairn_query.corpus.extract import ExtractError
from cairn_query.corpus.formats import ReadOptions
from cairn_query.corpus.formats.ocr import Ocr
from cairn_query.corpus.normalise import page_line

# Pillow refuses images past twice this many pixels (a decompression bomb); an A4 page at 600 dpi is 35 M.
MAX_PIXELS = 60_000_000


def read(data: bytes, options: ReadOptions) -> tuple[str, str | None]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        picture = Image.open(io.BytesIO(data))
        picture.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ExtractError(f"The image could not be read: {type(exc).__name__}.") from None
    ocr = Ocr(options.ocr_threads)
    out: list[str] = []
    for number, frame in enumerate(ImageSequence.Iterator(picture), 1):
        if number > options.ocr_max_pages:
            break
        paragraphs = ocr.paragraphs(frame)
        if paragraphs:
            out += [page_line(number), *paragraphs]
    return "\n\n".join(out), None

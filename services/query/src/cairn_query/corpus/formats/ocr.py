"""Text out of a picture of text, by RapidOCR (PaddleOCR's models run by ONNX Runtime). The models ship
inside the rapidocr-onnxruntime wheel (1.x; later versions download them at run time, which Cairn never
does), so OCR works offline. Loading them takes about half a second, so one engine serves all the pages
of one file.

Boxes come back one per line of text, in no reliable order: they are sorted into lines (top to bottom,
then left to right) and lines into paragraphs, a paragraph ending where the gap to the next line is wider
than a line.
"""

from __future__ import annotations

from typing import Any


class Ocr:
    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime import RapidOCR

        # One thread between operators: inside one the given threads already fill the cores QS may use.
        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def paragraphs(self, image: Any) -> list[str]:
        """The paragraphs of text in a PIL image, in reading order."""
        import numpy as np

        found, _ = self._engine(np.asarray(image.convert("RGB")))
        return _paragraphs(found or [])


def _paragraphs(found: list[Any]) -> list[str]:
    boxes = []
    for box, text, _score in found:
        ys = [p[1] for p in box]
        boxes.append((min(ys), max(ys), min(p[0] for p in box), str(text).strip()))
    boxes.sort()
    lines: list[list[tuple[float, float, float, str]]] = []
    for box in boxes:
        # Same line: its vertical middle is inside the line's first box.
        if lines and box[0] + (box[1] - box[0]) / 2 < lines[-1][0][1]:
            lines[-1].append(box)
        else:
            lines.append([box])
    out: list[list[str]] = []
    last_bottom, last_height = None, 0.0
    for line in lines:
        top, bottom = line[0][0], max(b[1] for b in line)
        text = " ".join(b[3] for b in sorted(line, key=lambda b: b[2]) if b[3])
        if not text:
            continue
        if last_bottom is None or top - last_bottom > last_height:
            out.append([])
        out[-1].append(text)
        last_bottom, last_height = bottom, bottom - top
    return [" ".join(p) for p in out]

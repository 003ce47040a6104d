"""Plain text out of uploaded files: .txt, .md, .html and .pdf. Anything else is refused with a reason code."""

from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser

from cairn_core import BadRequest, ReasonCode

SUPPORTED = {
    ".txt": "text",
    ".md": "text",
    ".markdown": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_CONTENT_TYPES = {
    "text/plain": "text",
    "text/markdown": "text",
    "text/x-markdown": "text",
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
        f"Unsupported file type {filename!r}; upload .txt, .md, .html or .pdf.",
        ReasonCode.UNSUPPORTED_MEDIA_TYPE,
    )


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements as paragraph breaks; script/style dropped."""

    _BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre"}
    _SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(raw: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = re.sub(r"\n{3,}", "\n\n", html.unescape("".join(parser.parts)))
    return text.strip(), parser.title.strip()


def pdf_to_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadRequest("The PDF is encrypted; upload an unencrypted copy.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except BadRequest:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise BadRequest(f"The PDF could not be read: {type(exc).__name__}.") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def extract(filename: str, content_type: str | None, data: bytes) -> tuple[str, str | None]:
    """Return (text, title found in the file or None)."""
    kind = kind_of(filename, content_type)
    if kind == "pdf":
        return pdf_to_text(data), None
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(f"{filename!r} is not UTF-8 text.") from None
    if kind == "html":
        text, title = html_to_text(raw)
        return text, title or None
    return raw, None

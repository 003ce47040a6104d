"""Text in the normalised form (`normalise.py`: `#` headings, plain paragraphs) out of file bytes: .txt, .md,
.rst, .html and .pdf.

Imports only the standard library (pypdf, markdown-it-py and docutils lazily), because `parse_worker` runs this
module in a fresh process for every upload but plain text, and its start-up time is each upload's overhead. Errors are `ExtractError`, whose
message is safe to show the uploader; the caller turns it into a 4xx.
"""

from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser


class ExtractError(ValueError):
    """The file cannot be read as its type; the message says why, for the uploader."""


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements as paragraph breaks; script/style dropped."""

    _BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "pre"}
    _HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
    _SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False
        self._heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        elif tag in self._HEADINGS:
            # A heading is a line of its own in the normalised form, which makes it the section's path.
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
            self._heading = True
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS or tag in self._HEADINGS:
            self._heading = False
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            # Inside a heading a line break would end the heading line.
            self.parts.append(" ".join(data.split()) + " " if self._heading else data)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # `<![ x` (neither CDATA nor a keyword) makes _markupbase raise AssertionError. Browsers treat it as a
        # bogus comment: drop it up to its `>` (or to the end when there is none) and keep the rest.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i + 3)
            return len(self.rawdata) if end < 0 else end + 1


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
            raise ExtractError("The PDF is encrypted; upload an unencrypted copy.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except ExtractError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise ExtractError(f"The PDF could not be read: {type(exc).__name__}.") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractError("The file is not UTF-8 text.") from None


def extract_file(kind: str, data: bytes) -> tuple[str, str | None]:
    """(text, title found in the file or None) of a file of `kind` ("text", "markdown", "rst", "html" or
    "pdf")."""
    if kind == "pdf":
        return pdf_to_text(data), None
    raw = decode_text(data)
    if kind == "html":
        text, title = html_to_text(raw)
        return text, title or None
    if kind == "markdown":
        from cairn_query.corpus.markup import markdown_to_text

        return markdown_to_text(raw), None
    if kind == "rst":
        from cairn_query.corpus.markup import rst_to_text

        return rst_to_text(raw), None
    return raw, None

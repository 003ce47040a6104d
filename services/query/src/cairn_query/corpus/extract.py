"""Text in the normalised form (`normalise.py`: `#` headings, plain paragraphs) out of file bytes: .txt, .md,
.rst and .html here; Office files, CSV, PDF and images by the readers in `formats/`.

Imports only the standard library (markdown-it-py, docutils and `formats/` lazily), because `parse_worker` runs this
module in a fresh process for every upload but plain text, and its start-up time is each upload's overhead. Errors are `ExtractError`, whose
message is safe to show the uploader; the caller turns it into a 4xx.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cairn_query.corpus.formats import ReadOptions


class ExtractError(ValueError):
    """The file cannot be read as its type; the message says why, for the uploader."""


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements as paragraph breaks; script, style and the site's
    boilerplate (navigation, header and footer bars, sidebars: the same on every page, so they would match
    every question) dropped; tables as rows with their column names (`formats/tables.py`)."""

    _BLOCKS = {"p", "div", "br", "li", "tr", "section", "article", "main", "pre"}
    _HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
    _SKIP = {"script", "style", "noscript", "template", "head", "nav", "footer", "aside", "header"}
    # ARIA landmarks of the same boilerplate, on any element (`<div role="navigation">`).
    _SKIP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping: list[str] = []  # the skipped elements' tags, outermost first, one per open element
        self._in_title = False
        self._heading = False
        self._table: _HTMLTable | None = None
        self._content = 0  # open <article> and <main> elements

    def _boilerplate(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in ("article", "main"):
            self._content += 1
        # An article's own <header> holds its title; only the page's header bar is boilerplate.
        if tag == "header" and self._content:
            return False
        return tag in self._SKIP or dict(attrs).get("role") in self._SKIP_ROLES

    @property
    def _skip(self) -> bool:
        return bool(self._skipping)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":  # in <head>, which is skipped
            self._in_title = True
        elif tag == "body" and self._skipping[:1] == ["head"]:
            self._skipping.clear()  # </head> is optional: the body ends the head
        elif self._skipping:
            # Nested elements of a skipped one's tag are counted, so that its own end tag ends the skip.
            if tag == self._skipping[0]:
                self._skipping.append(tag)
        elif self._boilerplate(tag, attrs):
            self._skipping.append(tag)
        elif self._table is not None or tag == "table":
            self._table = self._table or _HTMLTable()
            self._table.start(tag)
        elif tag in self._HEADINGS:
            # A heading is a line of its own in the normalised form, which makes it the section's path.
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
            self._heading = True
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif self._skipping:
            if tag == self._skipping[0]:
                self._skipping.pop()
        elif self._table is not None:
            if self._table.end(tag):
                from cairn_query.corpus.formats.tables import table_rows

                self.parts.append("\n\n" + "\n\n".join(table_rows(self._table.rows)) + "\n\n")
                self._table = None
        elif tag in self._BLOCKS or tag in self._HEADINGS:
            self._heading = False
            self.parts.append("\n\n")
            if tag in ("article", "main"):
                self._content = max(0, self._content - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._table is not None and not self._skip:
            self._table.data(data)
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


class _HTMLTable:
    """The cells of one table (a table inside a cell is read as that cell's text), row by row."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self._depth = 0

    def start(self, tag: str) -> None:
        if tag == "table":
            self._depth += 1
        elif tag == "tr" and self._depth == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self._depth == 1:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append("")

    def end(self, tag: str) -> bool:
        """True when this ends the table."""
        if tag == "table":
            self._depth -= 1
        return self._depth == 0

    def data(self, text: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += text


def html_to_text(raw: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = re.sub(r"\n{3,}", "\n\n", html.unescape("".join(parser.parts)))
    # Not strip(): it would take the mark off a table row that starts the text.
    return text.strip(" \t\n\r"), parser.title.strip()


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractError("The file is not UTF-8 text.") from None


def extract_file(kind: str, data: bytes, options: ReadOptions | None = None) -> tuple[str, str | None]:
    """(text, title found in the file or None) of a file of `kind` ("text", "markdown", "rst", "html", or
    one of `formats.FORMATS`)."""
    from cairn_query.corpus import formats

    if kind in formats.BY_KIND:
        return formats.read(kind, data, options or formats.ReadOptions())
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

"""Markup out, structure kept: every document's text becomes plain paragraphs under `#` headings.

Quotes are sentences of stored chunks, so whatever markup reaches a chunk reaches the user: `*__slots__*`,
a line of `********` under a heading glued to the first sentence, a `[1]` footnote number, a table's rules.
So the text is normalised once, at ingest, to one plain form that chunking reads:

- a heading is a line `# Heading` (`##` one level down, …); `sections` turns them into each chunk's section
  path, and they are never part of a chunk's text;
- paragraphs are separated by a blank line, which also ends a sentence (`cairn_core.split_sentences`);
- no emphasis markers, footnote numbers, directive lines or table rules; a grid table's row is one line,
  "first cell: other cells; …", so that it reads as one statement;
- a line `\fN` (form feed, then the number) starts page N (a PDF page, a slide): `sections` gives each
  section the page it is on, and a page break starts a new section (same heading path), so a chunk is on
  one page. Text with no such line has no pages;
- a line that starts with `\v` (vertical tab) is a table row written with its column names ("Region:
  North; Q3 revenue: 4.2 M", `formats/tables.py`): the chunker keeps it whole and drops the mark.
  Control characters, because no text format writes them on purpose: a document cannot mark a page by
  accident.

Formats with a parser are read by it in the parse worker (Markdown by markdown-it-py, reStructuredText by
docutils, both in `markup.py`; HTML by `extract.py`), which writes this form; `clean_plain` is the normaliser for plain text, including the text that
Sphinx writes (the form of Python's own `pydoc_data.topics`), for which no parser exists. It only reads
lines and runs linear regexes, so it runs in the ingest thread, on uploads and JSON texts alike, and is
idempotent on what the parsers write. Standard library only: the parse worker imports this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cairn_query.store.base import PATH_SEPARATOR

# A heading's underline (or overline), or a rule: one punctuation character repeated, alone on its line and
# not indented. Indented, it is code (`...` as a body, `"""` closing a docstring), which stays.
_RULE = re.compile(r"^([*=\-~^#\"'+`])\1{2,}\s*$")
# Headings and rubrics are matched with no backtracking pattern (a lazy group before optional spaces is
# quadratic in a long run of spaces): the text is tidied in Python.
_ATX = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
# Sphinx's text writer renders a rubric (the "Footnotes" above a document's footnotes) as -[ Footnotes ]-.
_RUBRIC = re.compile(r"^\s*-\[(.*)\]-\s*$")
# Footnotes as Sphinx writes them ([1], [#], [*]) and as Markdown extensions do ([^1]: …).
_FOOTNOTE_DEF = re.compile(r"^(\s*)\[(\d+|#|\*|\^[\w-]+)\]:?\s+")
_GRID_RULE = re.compile(r"^\s*\+[-=+:]+\+\s*$")
_GRID_HEAD = re.compile(r"^\s*\|[=|+:]+\|\s*$")
_SIMPLE_RULE = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w-]+)::\s*(.*)$")
_COMMENT = re.compile(r"^\s*\.\.(\s.*)?$")
_ADMONITIONS = {"note", "warning", "tip", "important", "caution", "attention", "danger", "error", "hint"}
# Emphasis outside code: **strong**, *emphasis*, and reST's `interpreted text`; never across a quote.
# Sphinx wraps lines at 70 characters, so emphasis may span a line break (never a paragraph).
_STRONG = re.compile(r"(?<![\w*])\*\*([^\s*\"][^*\"]*?)(?<!\s)\*\*(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*([^\s*\"][^*\"]*?)(?<![\s\\])\*(?![\w*])")
_INTERPRETED = re.compile(r"(?<![\w`])`{1,2}([^`]+?)`{1,2}(?:_{1,2})?(?![\w`])")
_CODE = re.compile(r"^\s*(>>>|\.\.\.\s|\$ )|::=", re.MULTILINE)
_FOOTNOTE_REF = re.compile(r"(?<=[\w.,;:)\]\"'])\s?\[(\d+|#|\*|\^[\w-]+)\](?=[\s.,;:)]|$)")
PAGE_MARK = "\f"
ROW_MARK = "\v"
_PAGE = re.compile(r"^\f(\d{1,6})[ \t]*$")


def page_line(number: int) -> str:
    """The line that starts page (or slide) `number` in the normalised form."""
    return f"{PAGE_MARK}{number}"


@dataclass(frozen=True, slots=True)
class Section:
    path: tuple[str, ...]  # the headings above the text, outermost first; () before the first heading
    text: str
    page: int | None = None  # the page or slide the text is on (a `\fN` line above it); None: no pages

    @property
    def name(self) -> str | None:
        return PATH_SEPARATOR.join(self.path) or None


def clean_plain(text: str) -> str:
    """Plain text (or Sphinx's text output) in the normalised form: headings as `#` lines, no markup."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    footnotes = {m.group(2) for line in lines if (m := _FOOTNOTE_DEF.match(line))}
    out: list[str] = []
    levels: list[tuple[str, bool]] = []  # heading styles in order of first use: (character, overlined)
    depth = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = _underlined(lines, i)
        if page := _PAGE.match(line):
            out += ["", page_line(int(page.group(1))), ""]
        elif heading is not None:
            title, style, used = heading
            if style not in levels:
                levels.append(style)
            depth = levels.index(style) + 1
            out += ["", "#" * min(depth, 6) + " " + title, ""]
            i += used
            continue
        elif m := _ATX.match(line):
            depth = len(m.group(1))
            out += ["", f"{m.group(1)} {_atx_title(m)}", ""]
        elif (m := _RUBRIC.match(line)) and m.group(1).strip():
            out += ["", "#" * min(depth + 1, 6) + " " + m.group(1).strip(), ""]
        elif _GRID_RULE.match(line) or _GRID_HEAD.match(line):
            rows, i = _grid_table(lines, i)
            for row in rows:  # each row a paragraph, so that each is a sentence of its own
                out += ["", row, ""]
            continue
        elif m := _DIRECTIVE.match(line):
            name = m.group(2).lower()
            # An admonition keeps its word ("Note:"), as Sphinx's own text output does; others say nothing.
            if name in _ADMONITIONS:
                out += ["", f"{m.group(1)}{name.capitalize()}: {m.group(3)}".rstrip()]
            elif m.group(3) and name not in {"image", "figure", "include", "raw"}:
                out.append(m.group(1) + m.group(3))
        elif _COMMENT.match(line) or _RULE.match(line) or _SIMPLE_RULE.match(line):
            out.append("")
        else:
            out.append(_FOOTNOTE_DEF.sub(r"\1", line))
        i += 1
    paragraphs = re.split(r"\n\s*\n", "\n".join(s.rstrip() for s in out))
    text = "\n\n".join(_inline(p, footnotes) for p in paragraphs if p.strip())
    # Whitespace around the text goes, but not the mark of a first page or row, which strip() counts as space.
    lead = text.lstrip(" \t\n\r")
    marked = lead.startswith(ROW_MARK) or _PAGE.match(lead.split("\n", 1)[0])
    return lead.rstrip() if marked else text.strip()


def sections(text: str) -> list[Section]:
    """The normalised text's sections, in order: each with its heading path and its paragraphs."""
    out: list[Section] = []
    path: list[str] = []
    body: list[str] = []
    page: int | None = None

    def close() -> None:
        joined = "\n".join(body).strip(" \t\n")
        if joined.strip():
            out.append(Section(tuple(path), joined, page))
        body.clear()

    for line in text.split("\n"):
        if m := _PAGE.match(line):
            close()
            page = int(m.group(1))
        elif m := _ATX.match(line):
            close()
            depth = len(m.group(1))
            del path[depth - 1 :]
            path.append(_atx_title(m))
        else:
            body.append(line)
    close()
    return out


def _atx_title(m: re.Match[str]) -> str:
    """An ATX heading's text, without the closing hashes Markdown allows (`## Title ##`)."""
    return m.group(2).rstrip().rstrip("#").rstrip() or m.group(2).strip()


def _underlined(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int] | None:
    """(heading, style, lines used) when line i starts a heading: text over a rule at least as long
    (Sphinx writes them equally long), or overlined and underlined with the same character."""
    over = _RULE.match(lines[i])
    if over and i + 2 < len(lines) and lines[i + 1].strip() and not _RULE.match(lines[i + 1]):
        under = _RULE.match(lines[i + 2])
        if under and under.group(1) == over.group(1):
            return lines[i + 1].strip(), (over.group(1), True), 3
    if i + 1 >= len(lines) or not (under := _RULE.match(lines[i + 1])):
        return None
    title = lines[i].strip()
    if not title or _RULE.match(lines[i]) or lines[i].startswith((" ", "\t")):
        return None
    if (
        i > 0 and lines[i - 1].strip()
    ):  # a heading starts a block; a rule under a paragraph's last line is not one
        return None
    if len(lines[i + 1].strip()) < len(title):
        return None
    return title, (under.group(1), False), 2


def _grid_table(lines: list[str], i: int) -> tuple[list[str], int]:
    """The rows of the grid table starting at line i, one line each ("first cell: other cells; …"), and the
    index of the line after it. A row's cells span the lines between two rules."""
    rows: list[str] = []
    cells: list[list[str]] = []
    while i < len(lines) and (line := lines[i].strip()) and line[0] in "+|":
        if _GRID_RULE.match(line) or _GRID_HEAD.match(line):
            if cells:
                rows.append(_row(cells))
            cells = []
        else:
            parts = [p.strip() for p in line.strip("|").split("|")]
            if not cells:
                cells = [[] for _ in parts]
            for k, part in enumerate(parts[: len(cells)]):
                if part:
                    cells[k].append(part)
        i += 1
    if cells:
        rows.append(_row(cells))
    return [r for r in rows if r], i


def _row(cells: list[list[str]]) -> str:
    texts = [" ".join(c) for c in cells if c]
    if len(texts) < 2:
        return texts[0] if texts else ""
    return f"{texts[0]}: {'; '.join(texts[1:])}"


def _inline(paragraph: str, footnotes: set[str]) -> str:
    """The paragraph without inline markup. Sphinx writes code between double quotes, where `*` and `[1]` are
    code, so only the parts outside quotes are touched, and a code example (`>>>`, a grammar) not at all."""
    if ("*" not in paragraph and "[" not in paragraph and "`" not in paragraph) or _CODE.search(paragraph):
        return paragraph
    parts = paragraph.split('"')
    for k in range(0, len(parts), 2):
        part = _STRONG.sub(r"\1", parts[k])
        part = _EMPHASIS.sub(r"\1", part)
        part = _INTERPRETED.sub(r"\1", part)
        parts[k] = _FOOTNOTE_REF.sub(lambda m: "" if m.group(1) in footnotes else m.group(0), part)
    return '"'.join(parts)

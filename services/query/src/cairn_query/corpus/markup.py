"""Markdown and reStructuredText to the normalised text form (`normalise.py`), each read by its own parser.

A regex cannot tell `*emphasis*` from `a * b * c`, or a heading from a line of dashes under a paragraph;
markdown-it-py (CommonMark) and docutils can. Both run only in the parse worker, under its limits, and are
imported there lazily, so an HTML or PDF upload does not pay for them.
"""

from __future__ import annotations

import re
from typing import Any

CODE_INDENT = "   "


def markdown_to_text(source: str) -> str:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    out: list[str] = []
    lists: list[list[int]] = []  # open lists: [next number] for ordered ones, [] for bullets
    row: list[str] | None = None  # the cells of the table row being read
    prefix = ""
    for tok in tokens:
        kind = tok.type
        if kind == "heading_open":
            prefix = "#" * int(tok.tag[1]) + " "
        elif kind == "bullet_list_open":
            lists.append([])
        elif kind == "ordered_list_open":
            lists.append([int(tok.attrGet("start") or 1)])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open" and lists:
            counter = lists[-1]
            prefix = f"{counter[0]}. " if counter else "- "
            if counter:
                counter[0] += 1
        elif kind == "tr_open":
            row = []
        elif kind == "inline":
            text = _md_inline(tok.children or [])
            if row is not None:
                row.append(text)
            elif text.strip():
                out.append(prefix + text)
                prefix = ""
        elif kind == "tr_close" and row is not None:
            out.append(_table_row(row))
            row = None
        elif kind in ("fence", "code_block"):
            out.append("\n".join(CODE_INDENT + line for line in tok.content.rstrip("\n").split("\n")))
        elif kind == "html_block":
            from cairn_query.corpus.extract import html_to_text

            text, _ = html_to_text(tok.content)
            if text:
                out.append(text)
    return "\n\n".join(p for p in out if p.strip())


def _md_inline(children: list[Any]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts).strip()


def _table_row(cells: list[str]) -> str:
    cells = [c for c in cells if c]
    return f"{cells[0]}: {'; '.join(cells[1:])}" if len(cells) > 1 else "".join(cells)


def rst_to_text(source: str) -> str:
    import docutils.core
    import docutils.nodes as nodes

    doctree = docutils.core.publish_doctree(
        source,
        settings_overrides={
            # An upload must not read files, run raw HTML or stop the parse: unknown directives (Sphinx's
            # own, such as versionadded) become system messages, which are left out.
            "file_insertion_enabled": False,
            "raw_enabled": False,
            "report_level": 5,
            "halt_level": 5,
            "warning_stream": False,
            "_disable_config": True,
            "input_encoding": "unicode",
            # Keep a lone top-level section a section (docutils would make it the document's title).
            "doctitle_xform": False,
        },
    )
    out: list[str] = []

    def walk(node: Any, depth: int, prefix: str = "") -> None:
        for child in node.children:
            if isinstance(child, nodes.title) and isinstance(node, nodes.section):
                out.append("#" * min(max(depth, 1), 6) + " " + child.astext())
            elif isinstance(child, nodes.section):
                walk(child, depth + 1)
            elif isinstance(child, nodes.system_message | nodes.comment | nodes.substitution_definition):
                continue
            elif isinstance(child, nodes.literal_block | nodes.doctest_block):
                out.append("\n".join(CODE_INDENT + line for line in child.astext().split("\n")))
            elif isinstance(child, nodes.paragraph):
                out.append(prefix + _rst_inline(child))
                prefix = ""
            elif isinstance(child, nodes.Admonition):
                label = child.tagname.capitalize() if child.tagname != "admonition" else ""
                walk(child, depth, f"{label}: " if label else "")
            elif isinstance(child, nodes.list_item):
                parent = child.parent
                if isinstance(parent, nodes.enumerated_list):
                    number = int(parent.get("start", 1)) + parent.index(child)
                    walk(child, depth, f"{number}. ")
                else:
                    walk(child, depth, "- ")
            elif isinstance(child, nodes.row):
                out.append(_table_row([" ".join(e.astext().split()) for e in child.children]))
            elif isinstance(child, nodes.footnote | nodes.citation):
                walk(child, depth)
            elif isinstance(child, nodes.label):
                continue
            elif isinstance(child, nodes.Element):
                walk(child, depth, prefix)

    walk(doctree, 0)
    return "\n\n".join(p for p in out if p.strip())


def _rst_inline(paragraph: Any) -> str:
    import docutils.nodes as nodes

    # A footnote reference's text is its number: a marker, not a word of the sentence.
    for ref in list(paragraph.findall(nodes.footnote_reference)):
        ref.parent.remove(ref)
    return re.sub(r"\s+([.,;:!?])", r"\1", " ".join(paragraph.astext().split()))

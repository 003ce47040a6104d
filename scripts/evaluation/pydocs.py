"""The real-document set: Python's own Language Reference sections, built from the installed Python.

`pydoc_data.topics.topics` ships with every CPython (PSF licence): the help() texts of the Language Reference
and of the built-in types, as Sphinx plain text. Nobody on the project wrote them, so they test Cairn on
prose it was not tuned for. They are built here at eval time, never copied into the repository; the
questions (services/query/eval/pydocs/questions.jsonl) were written from the texts of Python 3.11.

Some topics hold others whole ("compound" is if, while, for, try, with, def and class together): those
are left out, so that every fact has one document that states it.
"""

from __future__ import annotations

import platform

# Topics that contain other topics word for word (a question would have two right documents), or that
# repeat one (else = if).
CONTAINERS = {
    "compound",  # if, while, for, try, with, function, class, async
    "specialnames",  # customization, attribute-access, numeric-types, sequence-types, context-managers, ...
    "execmodel",  # naming, exceptions, dynamic-features
    "typesseq-mutable",  # inside typesseq
    "id-classes",  # inside identifiers
    "in",  # inside comparisons
    "dynamic-features",  # inside naming
    "augassign",  # inside assignment
    "else",  # the same text as if
}


def python_version() -> str:
    return platform.python_version()


def title_of(text: str, key: str) -> str:
    first = text.strip().splitlines()[0].strip() if text.strip() else key
    return first.replace('"', "") or key


def documents() -> list[dict[str, str]]:
    """One document per topic: id = the topic's key (for, while, integers, ...), title = its heading."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        if key in CONTAINERS:
            continue
        # As Python ships it, Sphinx markup and all: cleaning it up is QS's job (normalise.py), and measured here.
        text = topics[key]
        out.append({"id": key, "title": title_of(text, key), "text": text})
    return out

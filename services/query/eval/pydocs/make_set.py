"""Writes questions.jsonl: the questions of the real-document set (docs/eval.md, "The real set").

The documents are Python's own Language Reference help texts (`pydoc_data.topics`), built at eval time from
the installed Python by scripts/evaluation/pydocs.py; nothing of them is copied here. The questions were written
from the texts of Python 3.11.7, before Cairn was ever run on them. Each answerable question names the
document that answers it and the fact(s) a right answer holds (case-insensitive, quotes and spacing
ignored; `fact_regex` where the wording may vary). Running this checks every fact against the installed
Python's texts and fails when one is missing, so a later Python that reworded a section is caught.

Types: direct (worded like the text), paraphrase (a user's own words), lookalike (pairs of near-identical
sections, for vs while, integers vs floating, ...; both questions of a pair share their wording and go to
the same half), unanswerable (questions a Python user would ask that none of these texts answers).
The `split` (tune / heldout) alternates within each type, pairs kept whole, so both halves hold each type.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3] / "scripts"))

from evaluation.facts import normalise  # noqa: E402
from evaluation.pydocs import documents, python_version  # noqa: E402

# (question, document, facts): worded like the text.
DIRECT: list[tuple[str, str, list[str] | str]] = [
    (
        "What is the built-in variable __debug__ when optimization is requested?",
        "assert",
        ["False when optimization"],
    ),
    ("What happens when a pass statement is executed?", "pass", ["nothing happens"]),
    ("What exception is raised when del is used on an unbound name?", "del", ["NameError"]),
    ("What does a return statement in a generator function cause to be raised?", "return", ["StopIteration"]),
    (
        "What can functions created with lambda expressions not contain?",
        "lambda",
        ["statements or annotations"],
    ),
    (
        "What exception does raise without expressions give when there is no active exception?",
        "raise",
        ["RuntimeError"],
    ),
    ("What does 10**-2 return?", "power", ["0.01"]),
    ("What real part does the complex number of an imaginary literal have?", "imaginary", ["0.0"]),
    ("How many types of numeric literals are there?", "numbers", ["three"]),
    ("How is the bitwise inversion of x defined?", "unary", ["-(x+1)"]),
    (
        "What is the identifier __spam occurring in a class named Ham transformed to?",
        "atom-identifiers",
        ["_Ham__spam"],
    ),
    ("Which identifiers are soft keywords?", "identifiers", ["match", "case"]),
    ("Is the sort() method of lists guaranteed to be stable?", "typesseq", ["guaranteed to be stable"]),
    ("In what order does popitem() return dictionary pairs?", "typesmapping", ["LIFO"]),
    ("How are several items in one with statement processed?", "with", ["nested"]),
    ("What does the ',' option signal in a format specification?", "formatstrings", ["thousands separator"]),
    ("What does the id() function return?", "objects", ["integer representing its identity"]),
    ("When is an exception assigned with as target cleared?", "try", ["end of the except clause"]),
    (
        "When are default parameter values evaluated?",
        "function",
        ["when the function definition is executed"],
    ),
    ("In which version was the built-in breakpoint() added?", "debugger", ["3.7"]),
    ("Which operators test for an object's identity?", "comparisons", ["is and is not"]),
    ("In which version did await and async become keywords?", "async", ["3.7"]),
    (
        "What is the advantage of the range type over a regular list or tuple?",
        "typesseq",
        ["amount of memory"],
    ),
    (
        "Which exception is a subclass of NameError and is raised for an unbound local variable?",
        "naming",
        ["UnboundLocalError"],
    ),
    ("When is the trailing comma required in an expression list?", "exprlists", ["single tuple"]),
]

# (question, document or documents, facts or a regex): the same kind of facts in a user's own words.
PARAPHRASE: list[tuple[str, str | list[str], list[str] | str]] = [
    (
        "Is there a statement that does nothing at all, to fill a spot where code is required?",
        "pass",
        ["null operation"],
    ),
    (
        "If I reassign my loop counter inside the body, does that change the next iteration?",
        "for",
        r"overwrit|will not affect",
    ),
    (
        "When I combine two values with or, which one do I get back?",
        "booleans",
        r"last evaluated argument|if \*?x\*? is true, its value is returned",
    ),
    (
        "Why can't I use the caught error variable after the handler has finished?",
        "try",
        r"cleared|reference cycle|del n",
    ),
    (
        "Why does my function's list default keep growing between calls?",
        "function",
        r"evaluated once|modified",
    ),
    ("Why does -1**2 come out negative?", "power", r"binds more tightly|-1\*\*2 results in -1|right to left"),
    ("Why is 0755 rejected as a number?", "integers", ["leading zeros"]),
    (
        "Why does Python rename class attributes that start with two underscores?",
        "atom-identifiers",
        r"private name|_ham__spam|transformed",
    ),
    ("If I write the same key twice in a dict literal, which value wins?", "dict", r"last (one given|value)"),
    ("Does a dict remember the order I added the keys in?", ["typesmapping", "types"], ["insertion order"]),
    ("If two items compare equal, can sorting swap them?", "typesseq", ["stable"]),
    (
        "How do I compare two strings ignoring case, even for the German sharp s?",
        "string-methods",
        ["casefold"],
    ),
    (
        "Can I force an object to be freed from memory right away?",
        "objects",
        r"never explicitly destroyed|garbage",
    ),
    (
        "How can my context manager swallow an error raised inside the block?",
        "context-managers",
        ["true value"],
    ),
    ("How do I change a module-level variable from inside a function?", "global", r"\bglobal\b"),
    ("How can an inner function rebind a variable of the function around it?", "nonlocal", ["nonlocal"]),
    ("How does a module control what from module import * brings in?", "import", ["__all__"]),
    ("Which method builds the object before the initializer runs?", "customization", ["__new__"]),
    (
        "How can I stop instances from getting a per-instance dict, to save memory?",
        "attribute-access",
        ["__slots__"],
    ),
    ("How do I look around in a program after it crashed with an error?", "debugger", ["post-mortem"]),
    (
        "Why is a not-a-number float unequal to itself?",
        "comparisons",
        r"not equal to themselves|IEEE 754|x != x",
    ),
    ("How do I make a tuple holding only one element?", "exprlists", ["trailing comma"]),
    ("How do I write a string where backslashes are not escape characters?", "strings", ["raw strings"]),
    (
        "Does the cleanup method run for sure once the setup method of a context manager returned fine?",
        "with",
        ["always be called"],
    ),
    ("Can I flip every bit of a whole number?", "unary", ["bitwise inversion"]),
]

# Pairs of near-identical sections, one question each, worded alike: (question, document, facts or regex).
LOOKALIKE: list[tuple[tuple[str, str, list[str] | str], tuple[str, str, list[str] | str]]] = [
    (
        ("What does a continue statement do inside a for loop?", "for", ["next item"]),
        ("What does a continue statement do inside a while loop?", "while", ["testing the expression"]),
    ),
    (
        ("Is there a limit for the length of integer literals?", "integers", ["available memory"]),
        ("What is the allowed range of floating point literals?", "floating", ["implementation-dependent"]),
    ),
    (
        (
            "When break passes control out of a try statement with a finally clause, when does finally run?",
            "break",
            ["before really leaving the loop"],
        ),
        (
            "When continue passes control out of a try statement with a finally clause, when does finally run?",
            "continue",
            ["before really starting the next loop cycle"],
        ),
    ),
    (
        (
            "Must names listed in a nonlocal statement refer to existing bindings?",
            "nonlocal",
            ["pre-existing bindings"],
        ),
        (
            "Can names listed in a global statement be used before that statement in the same code block?",
            "global",
            ["must not be used"],
        ),
    ),
    (
        ("Where may a return statement occur?", "return", ["function definition"]),
        ("Where may a break statement occur?", "break", r"for.{0,12}while"),
    ),
    (
        ("How is the null object written?", "bltin-null-object", ["written as None"]),
        ("How is the ellipsis object written?", "bltin-ellipsis-object", ["written as Ellipsis or ..."]),
    ),
    (
        ("What is a right shift by n bits defined as?", "shifting", ["floor division"]),
        ("What does the ^ bitwise operator yield?", "bitwise", ["exclusive OR"]),
    ),
    (
        ("What does a list display yield?", "lists", ["new list object"]),
        ("What does a dictionary display yield?", "dict", ["new dictionary object"]),
    ),
    (
        ("What is the only special operation on a module?", "typesmodules", ["attribute access"]),
        ("What happens when you set an attribute on a bound method?", "typesmethods", ["AttributeError"]),
    ),
    (
        ("How are type objects written?", "bltin-type-objects", ["<class 'int'>"]),
        ("How can a code object be executed?", "bltin-code-objects", ["exec()"]),
    ),
]

# Questions a Python user asks that none of these sections answers (packaging, the standard library,
# tooling, performance); several share words with a section on purpose (open() and encodings, match).
UNANSWERABLE = [
    "How do I install a package with pip?",
    "What is the Global Interpreter Lock?",
    "How do I create a virtual environment?",
    "How do I read a CSV file in Python?",
    "What is the difference between asyncio.gather and asyncio.wait?",
    "How do I make an HTTP request in Python?",
    "How do I write a unit test with pytest?",
    "How do I parse a JSON string into a dict?",
    "How do I profile a slow Python program?",
    "What is the default maximum recursion depth?",
    "How many bytes does an int take in memory?",
    "How do I run code in parallel on several CPU cores?",
    "What encoding does open() use by default?",
    "How does a guard work in a match-case statement?",
    "How do dataclasses generate the __init__ method?",
    "How do I sort a dictionary by its values?",
    "What is the time complexity of appending to a list?",
    "How do I convert a datetime to a Unix timestamp?",
    "How do I read environment variables in Python?",
    "How do I upgrade from Python 3.11 to 3.12?",
]


def fact_fields(facts: list[str] | str) -> dict[str, Any]:
    return {"fact_regex": facts} if isinstance(facts, str) else {"facts": facts}


def rows() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, (q, doc, facts) in enumerate(DIRECT):
        out.append({"question": q, "type": "direct", "doc": doc, **fact_fields(facts), "split": half(i)})
    for i, (q, docs, facts) in enumerate(PARAPHRASE):
        out.append({"question": q, "type": "paraphrase", "doc": docs, **fact_fields(facts), "split": half(i)})
    for i, pair in enumerate(LOOKALIKE):
        for q, doc, facts in pair:
            out.append(
                {"question": q, "type": "lookalike", "doc": doc, **fact_fields(facts), "split": half(i)}
            )
    for i, q in enumerate(UNANSWERABLE):
        out.append({"question": q, "type": "unanswerable", "doc": None, "split": half(i)})
    return out


def half(i: int) -> str:
    return "tune" if i % 2 == 0 else "heldout"


def check(rows: list[dict[str, Any]]) -> None:
    """Every fact is in each of its documents, in this Python's texts."""
    texts = {d["id"]: normalise(d["title"] + "\n" + d["text"]) for d in documents()}
    for row in rows:
        docs = row["doc"]
        for doc in [docs] if isinstance(docs, str) else docs or []:
            text = texts[doc]
            facts = row.get("facts") or []
            assert isinstance(facts, list)
            ok = all(normalise(f) in text for f in facts)
            if "fact_regex" in row:
                ok = ok and re.search(str(row["fact_regex"]), text, re.IGNORECASE) is not None
            if not ok:
                raise SystemExit(f"not in {doc} of Python {python_version()}: {row}")


def main() -> None:
    out = rows()
    check(out)
    with (HERE / "questions.jsonl").open("w") as f:
        for row in out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

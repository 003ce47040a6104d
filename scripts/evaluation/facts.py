"""Whether an answer holds the expected fact(s): one rule for every set."""

from __future__ import annotations

import re
from typing import Any

# Sphinx text quotes code ("for", ‘"-"’); a quoting answer keeps the marks, another answer may not.
_QUOTES = re.compile(r"[\"'`‘’“”]")


# Sphinx text wraps lines after a hyphen: "post-\nmortem" reads "post- mortem" once spaces are collapsed.
_WRAPPED_HYPHEN = re.compile(r"(?<=\w)- (?=\w)")


def normalise(text: str) -> str:
    return _WRAPPED_HYPHEN.sub("-", " ".join(_QUOTES.sub("", text).lower().split()))


def has_facts(q: dict[str, Any], answer: str) -> bool:
    """All of `facts` (or the shipped set's one `fact`) in the answer, and `fact_regex` matching it, both
    on the normalised text (lower case, no quote marks, single spaces)."""
    facts = q.get("facts") or ([q["fact"]] if q.get("fact") else [])
    regex = q.get("fact_regex")
    if not facts and not regex:
        return False
    text = normalise(answer)
    if not all(normalise(f) in text for f in facts):
        return False
    return regex is None or re.search(regex, text, re.IGNORECASE) is not None

"""Sentences, and whether an answer is supported by the sources it cites.

One sentence splitter for the whole stack: QS picks the sentences that matter from the retrieved chunks, the
gateway numbers them for extractive answers, and the support check reads answers sentence by sentence, so all
three must cut text the same way.

`check_support` is the honesty check every grounded answer passes, whatever the provider: a valid citation is
not yet a true answer, since a small model can cite a real chunk and still invent the number it quotes. So:

- every number, amount, time or date in the answer must appear in a cited chunk;
- every name (a capitalised word that does not start a sentence) must appear in a cited chunk;
- every sentence must share most of its content words with a cited chunk;
- no sentence may repeat an earlier one.

It is lexical on purpose: deterministic, explainable in one line to the user, and calibrated on the shipped
evaluation set (docs/eval.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A sentence ends at . ! ? followed by whitespace and an upper-case letter, a digit or an opening quote; a
# full stop inside a number (0.45) or after a one-letter initial or a common abbreviation does not end one.
# Closing quotes and brackets after the stop belong to the sentence they close: '(… "ValueError".)'.
_CLOSING = "\"')]’”"
_BOUNDARY = re.compile(r"(?<=[.!?])([\"')\]’”]*)\s+(?=[\"'(\[“‘]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "approx.", "no.", "nr.", "dr.", "mr.", "mrs.", "ms.", "vs."}
)
_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][\w'’-]*")
# Digits with their separators: 0.45, 1,200, 7:30, 2026-11-01, 10%, and a currency sign before them.
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
# Inline citation markers such as [2] or [leave:0]: references to sources, not claims.
_MARKER = re.compile(r"\s*\[[^\s\[\]]{1,200}\]")
# A list item's bullet (normalise.py writes lists as "- item").
_BULLET = re.compile(r"^[-*•]\s+")
# What may surround a repeated sentence without making it another one.
_AROUND = " .,;:!?\"'’“”()[]"
_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for from with without into onto over under about as is are was
    were be been being am do does did done have has had having it its this that these those there here what
    which who whom whose when where why how can could may might must shall should will would not no nor only
    than then so such too very per each every any all some most more less much many own same other i you he
    she we they me him her us them my your his our their yours also just up down out off again further once
    within after before during until while both either neither via upon""".split()  # noqa: SIM905
)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, in order, stripped; a newline-separated list counts as sentences too. A list
    item's bullet is markup, not part of its sentence: a quote never starts with "- ". (A numbered item's "1."
    stays a sentence of its own, as it was when the stored sentence vectors were made: they are matched to
    sentences by position, evidence.py.)"""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        block = _BULLET.sub("", " ".join(block.split()))
        if not block:
            continue
        start = 0
        for m in _BOUNDARY.finditer(block):
            head = block[start : m.end(1)]
            last = head.rsplit(" ", 1)[-1].lower().rstrip(_CLOSING)
            if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
                continue
            out.append(head.strip())
            start = m.end()
        out.append(block[start:].strip())
    return [s for s in out if s]


def join_sentences(sentences: Iterable[str]) -> str:
    """The sentences as one text that `split_sentences` cuts back into the same sentences: a space where that
    keeps them apart, a blank line where it would not (after a grammar line or a heading, which end without a
    full stop). Evidence sent to the model and quotes written from it are read sentence by sentence again."""
    text = ""
    for sentence in sentences:
        if text:
            glued = f"{text} {sentence}"
            apart = split_sentences(glued)[-2:] == [*split_sentences(text)[-1:], sentence]
            text = glued if apart else f"{text}\n\n{sentence}"
        else:
            text = sentence
    return text


def _stem(word: str) -> str:
    w = word.lower().strip("'’-")
    for suffix in ("'s", "’s"):
        w = w.removesuffix(suffix)
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def word_stems(text: str) -> set[str]:
    """Every word of `text`, stemmed, lone letters and stopwords included: what a name is looked up in. Code
    and grammar name things with one letter ("E" in `("e" | "E")`, "the C implementation"), which
    `content_words` leaves out."""
    return {_stem(w) for w in _WORD.findall(text)}


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words that carry meaning (no stopwords, no one-letter words)."""
    return {s for w in _WORD.findall(text) if len(s := _stem(w)) > 1 and not _common(w)}


def numbers(text: str) -> set[str]:
    """Every number in `text`, normalised so that "1,200" and "1200" match."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def names(sentence: str) -> set[str]:
    """Names of people, places, products, companies: capitalised words that do not start the sentence, and a
    first word in the possessive ("Corvale's"), which no common word is."""
    words = _WORD.findall(sentence)
    first = [words[0]] if words and words[0][0].isupper() and words[0].endswith(("'s", "’s")) else []
    return {_stem(w) for w in [*first, *words[1:]] if w[0].isupper() and not _common(w)}


def _common(word: str) -> bool:
    """A stopword, as written or as stemmed ("Does" stems to "doe", "This" to "thi": neither is a name)."""
    return word.lower() in _STOPWORDS or _stem(word) in _STOPWORDS


_CALENDAR = frozenset(
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ]
)


def names_in(text: str, first_words: bool = True) -> set[str]:
    """The names a text mentions, without weekdays and months: `names` of each sentence, and a sentence's
    first word when the text never writes it in lower case ("Fernhill offers …", but not "Parental leave …"
    in a text that also says "parental").

    `first_words=False` is for a question: its first word is its verb or question word ("Does", "Explain",
    "Past what sum …"). In both evaluation sets no question's first word was a name, and a question's words
    are too few to show it in lower case, so each such word passed for a name that every chunk without it
    lacked: "Does Starlette support WebSockets?" found nothing in a README that says "WebSocket support"."""
    lower = {_stem(w) for w in _WORD.findall(text) if w[0].islower()}
    out: set[str] = set()
    for sentence in split_sentences(text):
        out |= names(sentence)
        words = _WORD.findall(sentence)
        if first_words and words and words[0][0].isupper() and not _common(words[0]):
            out |= {_stem(words[0])} - lower
    return out - _CALENDAR


def without_names(text: str, names: set[str]) -> str:
    """`text` with the words whose stem is in `names` left out."""
    return " ".join(_WORD.sub(lambda m: "" if _stem(m.group(0)) in names else m.group(0), text).split())


def overlap(sentence: str, source: str) -> float:
    """Share of the sentence's content words that the source contains (1.0 for a sentence with none)."""
    words = content_words(sentence)
    return len(words & content_words(source)) / len(words) if words else 1.0


def strip_markers(text: str) -> str:
    """`text` without inline citation markers such as [2] or [leave:0]."""
    return _MARKER.sub("", text)


def _normal(sentence: str) -> str:
    """The sentence as a repeat is recognised: case, spacing and the punctuation around it aside. Symbols
    inside count, since in code and grammar they are the difference ("x == y" and "x != y")."""
    return " ".join(sentence.lower().split()).strip(_AROUND)


@dataclass(frozen=True, slots=True)
class SupportVerdict:
    supported: bool
    reason: str = ""  # one line a user can read, when not supported

    def __bool__(self) -> bool:
        return self.supported


def check_support(answer: str, sources: Sequence[str], min_overlap: float = 0.6) -> SupportVerdict:
    """Is every sentence of `answer` backed by the cited `sources` (their titles and texts)?"""
    if not sources:
        return SupportVerdict(False, "the answer cites no source")
    joined = "\n".join(sources)
    source_numbers = numbers(joined)
    source_words = content_words(joined)
    source_stems = word_stems(joined)
    seen: set[str] = set()
    for sentence in split_sentences(strip_markers(answer)):
        key = _normal(sentence)
        if key and key in seen:
            return SupportVerdict(False, f"the answer repeats a sentence: {sentence!r}")
        seen.add(key)
        missing = sorted(numbers(sentence) - source_numbers)
        if missing:
            return SupportVerdict(False, f"{', '.join(missing)} does not appear in the cited sources")
        unknown = sorted(names(sentence) - source_stems)
        if unknown:
            return SupportVerdict(False, f"{', '.join(unknown)} does not appear in the cited sources")
        words = content_words(sentence)
        if words and len(words & source_words) / len(words) < min_overlap:
            return SupportVerdict(False, f"{sentence!r} is not found in the cited sources")
    return SupportVerdict(True)

"""Documents we did not write: the Python Language Reference as Sphinx renders it to text, shipped with every
CPython as `pydoc_data.topics` (PSF licence). Its code, grammar and markup are what real reference
documentation looks like."""

from __future__ import annotations

import re
import time
from pathlib import Path
from pydoc_data.topics import topics

import pytest
from cairn_core import check_support, content_words, split_sentences
from cairn_query.chat.evidence import (
    Evidence,
    Sentence,
    about_someone_else,
    holds_every_word,
    lexical,
    nameless,
    with_what_follows,
    word_weights,
)
from cairn_query.corpus.documents import chunk_document
from cairn_query.corpus.extract import html_to_text
from cairn_query.corpus.normalise import clean_plain
from cairn_query.corpus.parsing import FileParser
from cairn_query.corpus.retrieval import Hit
from cairn_query.store import ChunkRow, NewDocument, SQLiteStore, heading


def _hit(text: str, title: str) -> Hit:
    chunk = ChunkRow(1, "doc:0", "doc", 0, text, title, None, "default", {})
    return Hit(chunk, 1.0, 1, 1, 0.9, True)


def test_a_one_letter_name_in_the_question_is_found_in_the_chunk() -> None:
    # "C" is a name the chunk holds; lone letters were not looked up, so the chunk passed for another party's.
    hit = _hit(topics["typesseq"], "Sequence Types")
    question = "Does the C implementation of Python make the list appear empty while it sorts?"
    assert not about_someone_else(question, hit)


@pytest.mark.parametrize(
    "question",
    [
        "Does a dict display keep its keys in insertion order?",
        "Explain what a dict display does with a repeated key.",
        "Past which Python version is the evaluation order of a display fixed?",
    ],
)
def test_a_question_opening_with_a_verb_is_not_about_someone_else(question: str) -> None:
    # A question's first word was taken for a name when the question never wrote it in lower case ("Does"
    # stems to "doe"): every chunk without it that names anything (this one names CPython and PEPs) passed
    # for another party's document, and "Does Starlette support WebSockets?" found nothing at all.
    hit = _hit(topics["dict"], "Dictionary displays")
    assert not about_someone_else(question, hit)


def test_a_sentence_of_names_only_is_matched_as_written() -> None:
    # A README bullet (requests' "Supported Features") is all capitalised words: without its names it was
    # empty, the gateway refused to embed "", and an answer went out with no evidence check at all.
    question, bullet = "Does Requests support SOCKS proxies?", "SOCKS Proxy Support"
    assert nameless(question, bullet) == (question, bullet)
    # Where both keep words, the names go: "Lyon" makes the office hours look like the population.
    assert nameless("What is the population of Lyon?", "The Lyon office is open from 7:30.") == (
        "What is the population of ?",
        "The office is open from 7:30.",
    )


def _sentence(hit: Hit, text: str, score: float) -> Sentence:
    return Sentence(hit, text, 0, None, 0.0, score)


def test_a_quote_holding_every_word_of_the_question_is_strong_from_the_lower_threshold() -> None:
    # uvicorn's README: the name-less match of this right quote is 0.37, since its words are the names.
    hit = _hit("Uvicorn currently supports HTTP/1.1, HTTP/2 and WebSockets.", "uvicorn.md")
    chosen = [_sentence(hit, "Uvicorn currently supports HTTP/1.1, HTTP/2 and WebSockets.", 1.0)]
    assert holds_every_word("Does uvicorn support WebSockets?", chosen)
    assert not holds_every_word("Does uvicorn support WebSockets over QUIC?", chosen)
    assert not holds_every_word("Does uvicorn support HTTP/3?", chosen)  # every word, but not the 3
    covered, not_covered = Evidence(chosen, 0.45, True), Evidence(chosen, 0.45, False)
    assert covered.strong(0.41, 0.60) and not not_covered.strong(0.41, 0.60)
    assert not Evidence(chosen, 0.30, True).strong(0.41, 0.60)  # below the floor, words or not
    assert Evidence(chosen, 0.65, False).strong(0.41, 0.60)


def test_a_lead_in_is_quoted_with_what_it_introduces() -> None:
    # The Language Reference's `with` topic: "… proceeds as follows:" quoted alone was shown as the answer to
    # "How are several items in one with statement processed?"; what it introduces is item 1, past its "1.".
    text = topics["with"]
    sentences = split_sentences(text)
    hit = _hit(text, "The with statement")
    lead = sentences.index('The execution of the "with" statement with one “item” proceeds as follows:')
    other = sentences.index("Note:")
    ranked = [
        Sentence(hit, sentences[i], i, None, 0.0, 1.0 - k / 10) for k, i in enumerate((lead, 2, other, 3))
    ]
    chosen = with_what_follows(ranked, 3)
    assert [s.position for s in chosen] == [lead, lead + 2, 2, other, other + 1]
    assert chosen[1].text.startswith("The context expression (the expression given in the")
    # The followers come on top of the limit: the best three are all still there, and the fourth is not.
    assert 3 not in [s.position for s in chosen]
    # Neither the gate nor the gateway reads the lead-in alone: the quote is the pair.
    assert Evidence(chosen).context()[0].text.startswith(f"{sentences[lead]}\n\nThe context expression")


def test_a_rare_question_word_counts_more_than_common_ones() -> None:
    # Every sentence of the `continue` topic says "continue", two say "statement", one says "finally". Counted
    # plainly, a sentence holding "continue" and "statement" matches the question better than one holding
    # "finally"; weighted by rarity among the candidates, "finally" says more about which sentence answers.
    words = [content_words(s) for s in split_sentences(topics["continue"])]
    weights = word_weights(content_words("When continue leaves a try statement, does finally run?"), words)
    common, rare = {"continue", "statement"}, {"finally"}
    assert len(common & weights.keys()) > len(rare & weights.keys())
    assert lexical(weights, rare) > lexical(weights, common)
    assert lexical(weights, set(weights)) == pytest.approx(1.0)


# --- clean text in: Sphinx's text output ------------------------------------------------------------------


def _quotes(topic: str) -> list[tuple[str | None, str]]:
    """(section path, sentence) for every sentence of every chunk of a topic, as evidence and quotes see them."""
    return [
        (section, s)
        for section, chunk, _ in chunk_document(topics[topic], 800, 150)
        for s in split_sentences(chunk)
    ]


def _find(topic: str, start: str) -> tuple[str | None, str]:
    return next((section, s) for section, s in _quotes(topic) if s.startswith(start))


def test_a_sphinx_heading_is_the_section_path_and_not_glued_to_the_first_sentence() -> None:
    # Before: "Floating point literals *********************** Floating point literals are described by the
    # following lexical definitions: floatnumber ::= … Note that the integer and exponent parts are always
    # interpreted using radix 10." was one sentence.
    quotes = _quotes("floating")
    assert quotes[0] == (
        "Floating point literals",
        "Floating point literals are described by the following lexical definitions:",
    )
    assert quotes[1][1].startswith("floatnumber ::= pointfloat | exponentfloat")
    assert quotes[1][1].endswith('exponent ::= ("e" | "E") ["+" | "-"] digitpart')
    assert quotes[2][1] == "Note that the integer and exponent parts are always interpreted using radix 10."
    assert _find("compound", 'If "finally" is present')[0] == (
        'Compound statements › The "try" statement › "finally" clause'
    )


def test_emphasis_markers_leave_real_sentences_and_code_keeps_its_stars() -> None:
    assert _find("attribute-access", "__slots__ allow us") == (
        "Customizing attribute access › __slots__",
        "__slots__ allow us to explicitly declare data members (like properties) and deny the creation of"
        ' "__dict__" and __weakref__ (unless explicitly declared in __slots__ or available in a parent.)',
    )
    # "*y" inside the quoted call is code; the *y* outside it was emphasis.
    assert _find("calls", "For the call")[1] == (
        'For the call "f(x1, x2, *y, x3, x4)", if y evaluates to a sequence y1, …, yM, this is equivalent to a'
        " call with M+4 positional arguments x1, x2, y1, …, yM, x3, x4."
    )


def test_footnotes_lose_their_numbers_and_go_under_their_rubric() -> None:
    assert _find("compound", "If the subject value is not a sequence")[1] == (
        "If the subject value is not a sequence, the sequence pattern fails."
    )
    assert _find("async", "The exception is propagated") == (
        'Coroutines › The "async with" statement › Footnotes',
        'The exception is propagated to the invocation stack unless there is a "finally" clause which happens to'
        " raise another exception.",
    )


def test_a_grid_table_row_is_one_sentence_without_rules() -> None:
    assert _find("typesseq", '"max(s)"')[1] == '"max(s)": largest item of s'
    assert _find("strings", '"\\"<newline>')[1] == '"\\"<newline>: Backslash and newline ignored; (1)'


def test_no_chunk_of_any_reference_section_holds_layout_markup() -> None:
    layout = re.compile(r"^\s*(([*=\-~^])\2{2,}|-\[ .* \]-|\+[-=+]{3,}\+|\|[-=|]{3,}\|)\s*$", re.MULTILINE)
    for key, text in topics.items():
        normalised = clean_plain(text)
        assert clean_plain(normalised) == normalised, key  # uploads are normalised twice (worker, ingest)
        for _, chunk, _ in chunk_document(text, 800, 150):
            assert not layout.search(chunk), (key, chunk)
            assert len(chunk) <= 800


@pytest.mark.parametrize(
    "topic", ["floating", "integers", "power", "with", "calls", "typesseq", "attribute-access"]
)
def test_every_sentence_of_a_chunk_is_a_supported_quote_of_it(topic: str) -> None:
    # Clean quotes out: what the extractive answer quotes from a chunk passes the support check on that chunk.
    for section, chunk, _ in chunk_document(topics[topic], 800, 150):
        source = f"{heading(topic, section)}\n{chunk}"
        for sentence in split_sentences(chunk):
            assert check_support(sentence, [source]), sentence


# --- clean text in: Markdown, reStructuredText and HTML, each read by its parser in the parse worker ---------

SLOTS_MD = """# Customizing attribute access

## `__slots__`

`__slots__` allow us to explicitly declare data members (like
properties) and deny the creation of `__dict__` and *`__weakref__`*
(unless explicitly declared in `__slots__` or available in a parent.)

| Operation | Result |
|---|---|
| `max(s)` | largest item of *s* |
"""

SLOTS_RST = """Customizing attribute access
============================

__slots__
---------

*__slots__* allow us to explicitly declare data members (like
properties) and deny the creation of ``__dict__`` and *__weakref__*
(unless explicitly declared in *__slots__* or available in a parent.) [#]_

.. note::

   The space saved over using ``__dict__`` can be **significant**.

.. versionchanged:: 3.8
   Sphinx's own directives are unknown to docutils.

.. [#] Attribute lookup speed can be significantly improved as well.
"""

SLOTS_SENTENCE = (
    "__slots__ allow us to explicitly declare data members (like properties) and deny the creation of"
    " __dict__ and __weakref__ (unless explicitly declared in __slots__ or available in a parent.)"
)


async def test_markdown_and_rest_uploads_are_read_by_their_parsers_in_the_worker() -> None:
    parser = FileParser(timeout_s=10, memory_mb=1024, concurrency=1)
    for name, source in [("slots.md", SLOTS_MD), ("slots.rst", SLOTS_RST)]:
        text, _ = await parser.extract(name, None, source.encode())
        chunks = chunk_document(text, 800, 150)
        assert chunks[0][0] == "Customizing attribute access › __slots__", name
        sentences = [s for _, chunk, _ in chunks for s in split_sentences(chunk)]
        assert sentences[0] == SLOTS_SENTENCE.replace('"', ""), name
        assert not any(mark in chunk for _, chunk, _ in chunks for mark in ("*", "`", "[#]", "..", "|")), name
    md_text, _ = await parser.extract("slots.md", None, SLOTS_MD.encode())
    assert "max(s): largest item of s" in md_text
    rst_text, _ = await parser.extract("slots.rst", None, SLOTS_RST.encode())
    assert "Note: The space saved over using __dict__ can be significant." in rst_text
    assert "Attribute lookup speed can be significantly improved as well." in rst_text


def test_html_headings_become_the_section_path() -> None:
    text, title = html_to_text(
        "<title>Data model</title><h1>Customizing attribute access</h1><h2><code>__slots__</code>\n</h2>"
        "<p><em>__slots__</em> allow us to explicitly declare data members.</p>"
    )
    assert title == "Data model"
    assert chunk_document(text, 800, 150) == [
        (
            "Customizing attribute access › __slots__",
            "__slots__ allow us to explicitly declare data members.",
            None,
        )
    ]


def test_a_chunk_keeps_its_section_and_is_found_by_its_heading(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    pieces = chunk_document(topics["power"], 800, 150)
    doc = NewDocument(
        "power",
        "default",
        "Expressions",
        None,
        {},
        topics["power"],
        "h",
        [p.text for p in pieces],
        sections=[p.section for p in pieces],
    )
    store.upsert(doc)
    chunk = store.get_chunk("power:0")
    assert chunk is not None and chunk.section == "The power operator"
    assert chunk.heading == "Expressions › The power operator"
    assert chunk.public()["section"] == "The power operator"
    # The second chunk says "operator" only in its heading, and the keyword index finds it there.
    second = store.get_chunk("power:1")
    assert second is not None and "operator" not in second.text.lower()
    assert second.rowid in store.bm25("operator", 10, None, {})


@pytest.mark.parametrize("line", ["# a" + " " * 200_000 + "b", "-[ a" + " " * 200_000 + "b ]-"])
def test_a_crafted_heading_line_is_normalised_in_linear_time(line: str) -> None:
    # JSON texts are normalised in QS itself, not in the parse worker: no pattern may backtrack on a long
    # run of spaces (the first patterns took minutes on these lines; linear, they take milliseconds).
    started = time.perf_counter()
    clean_plain(line)
    assert time.perf_counter() - started < 2


def test_the_evidence_of_one_chunk_reaches_the_gateway_as_separate_sentences() -> None:
    _, chunk, _ = chunk_document(topics["floating"], 800, 150)[0]
    hit = _hit(chunk, "Lexical analysis")
    grammar, note = split_sentences(chunk)[1:3]
    evidence = Evidence([Sentence(hit, grammar, 1, 0.6, 0.5, 0.8), Sentence(hit, note, 2, 0.5, 0.5, 0.7)])
    (context,) = evidence.context()
    # Joined by a space, the gateway read the grammar line and the note as one sentence and quoted both.
    assert split_sentences(context.text) == [grammar, note]


def test_a_sentence_longer_than_a_chunk_is_cut_after_a_clause() -> None:
    # The one sentence of the Language Reference longer than a chunk (1,410 characters: code object
    # attributes, separated by semicolons). Cut on the last space before 800, its first piece ended in
    # '…referenced by nested functions; "co_freevars" is a tuple containing', mid-clause.
    whole = next(s for s in split_sentences(clean_plain(topics["types"])) if "co_qualname" in s)
    pieces = [
        s
        for _, chunk, _ in chunk_document(topics["types"], 800, 150)
        for s in split_sentences(chunk)
        if s in whole and len(s) > 100
    ]
    assert " ".join(dict.fromkeys(pieces)) == whole
    assert all(len(p) <= 800 and p.endswith((";", ".")) for p in pieces)


def test_an_indented_line_of_dots_is_code_and_stays() -> None:
    # A doctest's continuation line "..." looks like a rule; indented, it is code (topics["calls"]).
    example = "   >>> def f(a, b):\n   ...     print(a, b)\n   ...\n   >>> f(b=1, *(2,))\n   2 1"
    assert example in topics["calls"]
    assert example in clean_plain(topics["calls"])

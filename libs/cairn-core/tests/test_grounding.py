"""The sentence splitter and the support check that every grounded answer passes."""

from __future__ import annotations

from pydoc_data.topics import topics

import pytest
from cairn_core import check_support, join_sentences, names_in, numbers, split_sentences

SOURCE = (
    "Brindlewick mileage policy\n"
    "Brindlewick Logistics reimburses private car trips at 0.42 euros per kilometre. Claims of more than "
    "1,200 euros need approval, e.g. from the budget owner. Claims are filed by 31 March."
)


def test_sentences_split_on_full_stops_but_not_in_numbers_or_abbreviations() -> None:
    assert split_sentences("The rate is 0.45 EUR. Ask e.g. HR first. Done!  Next? yes") == [
        "The rate is 0.45 EUR.",
        "Ask e.g. HR first.",
        "Done!",
        "Next? yes",
    ]
    # A bullet is markup: a quote of the item does not start with it.
    assert split_sentences("Intro:\n- first item\n* second item\n• third - not a bullet") == [
        "Intro:",
        "first item",
        "second item",
        "third - not a bullet",
    ]
    assert split_sentences("  \n ") == []


def test_numbers_match_with_or_without_thousands_separators() -> None:
    assert numbers("1,200 euros at 7:30 on 2026-11-01, 0.42 each") == {"1200", "7:30", "2026-11-01", "0.42"}


def test_a_quoted_sentence_is_supported() -> None:
    assert check_support(
        "Brindlewick Logistics reimburses private car trips at 0.42 euros per kilometre.", [SOURCE]
    )
    # Inline citation markers are references, not claims.
    assert check_support("Claims are filed by 31 March [brindlewick-mileage:0].", [SOURCE])


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Brindlewick reimburses private car trips at 0.38 euros per kilometre.", "0.38"),
        ("Corvale's drivers get 0.42 euros per kilometre.", "corvale"),
        ("Drivers at Corvale get 0.42 euros per kilometre.", "corvale"),
        ("The tyre pressure should be kept high for safety reasons always.", "not found"),
        ("Claims are filed by 31 March. Claims are filed by 31 March.", "repeats"),
    ],
)
def test_unsupported_answers_are_caught_with_a_reason(answer: str, why: str) -> None:
    verdict = check_support(answer, [SOURCE])
    assert not verdict and why in verdict.reason.lower()


def test_an_answer_without_sources_is_unsupported() -> None:
    assert not check_support("Anything.", [])


# Real reference text: sections of the Python Language Reference as Sphinx renders them to text, shipped with
# every CPython as `pydoc_data.topics` (PSF licence). Code and grammar name things with one letter and with
# symbols, which the support check must take as they are.
FLOATING = topics["floating"]


@pytest.mark.parametrize(
    "topic", ["floating", "integers", "calls", "comparisons", "formatstrings", "strings"]
)
def test_every_sentence_of_a_real_reference_section_is_supported_by_it(topic: str) -> None:
    text = topics[topic]
    rejected = [(s, v.reason) for s in split_sentences(text) if not (v := check_support(s, [text]))]
    assert rejected == []


def test_a_quoted_grammar_line_with_a_lone_letter_is_supported() -> None:
    # The answer to "Can I use underscores to group digits in a float literal?" was rejected with
    # "e does not appear in the cited sources": "E" reads as a name and lone letters were not looked up.
    answer = (
        'exponent ::= ("e" | "E") ["+" | "-"] digitpart [floating:0] As in integer literals, underscores are'
        " supported for digit grouping. [floating:0]"
    )
    assert check_support(answer, [FLOATING])
    calls = topics["calls"]
    assert check_support(
        "If there are N positional arguments, they are placed in the first N slots.", [calls]
    )


def test_quoted_code_lines_that_differ_only_in_symbols_are_not_repeats() -> None:
    # Two lines of the same example, as the reference writes them: the words are the same, the operators not.
    source = topics["comparisons"]
    assert check_support('"x == y" and "y == x"\n\n"x != y" and "y != x"', [source])
    assert not check_support('"x == y" and "y == x"\n\n"x == y" and "y == x".', [source])


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        # A changed version number, a changed exception name, a changed lone letter in the grammar.
        ("Changed in version 3.7: Underscores are now allowed for grouping purposes in literals.", "3.7"),
        ('exponent ::= ("x" | "X") ["+" | "-"] digitpart', "x"),
        ('Raising "0.0" to a negative power results in a "OverflowError".', "overflowerror"),
    ],
)
def test_a_changed_number_letter_or_name_in_a_real_quote_is_still_caught(answer: str, why: str) -> None:
    verdict = check_support(answer, [FLOATING, topics["power"]])
    assert not verdict and why in verdict.reason.lower()


GRAMMAR_LINE = 'exponent ::= ("e" | "E") ["+" | "-"] digitpart'
UNDERSCORES = "As in integer literals, underscores are supported for digit grouping."


def test_joined_sentences_split_back_into_the_same_sentences() -> None:
    # A grammar line ends without a full stop: after a space the next sentence would be glued to it.
    assert join_sentences([GRAMMAR_LINE, UNDERSCORES]) == f"{GRAMMAR_LINE}\n\n{UNDERSCORES}"
    assert join_sentences([UNDERSCORES, "Some examples of floating point literals:"]) == (
        f"{UNDERSCORES} Some examples of floating point literals:"
    )
    for key in ("floating", "power", "with", "calls", "formatstrings"):
        sentences = split_sentences(topics[key])
        assert split_sentences(join_sentences(sentences)) == sentences, key


def test_a_closing_bracket_or_quote_stays_with_the_sentence_it_closes() -> None:
    # Before, the sentence was quoted as '(This is an intentional asymmetry … "__setattr__()".', cut off.
    paragraph = topics["attribute-access"]
    start = paragraph.index("Note that if the attribute is found through the normal mechanism")
    sentences = split_sentences(paragraph[start : paragraph.index("This is done both for", start) + 40])
    assert sentences[:2] == [
        'Note that if the attribute is found through the normal mechanism, "__getattr__()" is not called.',
        '(This is an intentional asymmetry between "__getattr__()" and "__setattr__()".)',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Does a dict keep its keys in order? This one does not.", set()),  # "doe", "thi": stopwords stemmed
        ("Fernhill offers 20 weeks of leave.", {"fernhill"}),  # a name that starts a sentence
        ("Parental leave is 20 weeks. Fernhill pays parental leave in full.", {"fernhill"}),
    ],
)
def test_names_in_text(text: str, expected: set[str]) -> None:
    assert names_in(text) == expected


@pytest.mark.parametrize(
    "question",
    [
        "Does Starlette support WebSockets?",
        "Explain how Starlette handles WebSockets.",
        "Past what sum must I ask?",
    ],
)
def test_a_questions_first_word_is_its_verb_not_a_name(question: str) -> None:
    assert names_in(question, first_words=False) <= {"starlette", "websocket"}
    assert names_in(question) - names_in(question, first_words=False) <= {"explain", "past"}

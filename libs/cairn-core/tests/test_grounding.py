"""The sentence splitter and the support check that every grounded answer passes."""

from __future__ import annotations

import pytest
from cairn_core import check_support, numbers, split_sentences

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
    assert split_sentences("Intro:\n- first item\n- second item") == [
        "Intro:",
        "- first item",
        "- second item",
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

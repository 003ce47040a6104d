"""Follow-up questions are searched as standalone questions (followup.py): the rules, the model's rewrite and
its checks, and a two-turn conversation against real QS and gateway processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_core import (
    ChatMessage,
    GenerateRequest,
    GenerateResponse,
    ReasonCode,
    UpstreamError,
    content_words,
)
from cairn_query.chat.followup import (
    Followups,
    check_model_rewrite,
    looks_like_followup,
    lower_words,
    rewrite_rules,
    standalone_by_rules,
)
from cairn_query.schemas import MAX_QUESTION_CHARS
from cairn_query.settings import QuerySettings
from cairn_testing import ServerProcess

from .conftest import start_qs


def conversation(*turns: str) -> list[ChatMessage]:
    """User and assistant turns in turn, starting with the user."""
    return [ChatMessage(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(turns)]


def by_rules(*questions: str) -> str:
    """The standalone question for the last of `questions`, asked in turn with a short answer between."""
    turns: list[str] = []
    for q in questions:
        turns += [q, "Here is what the documents say."]
    messages = conversation(*turns[:-1])
    last, previous = standalone_by_rules(messages)
    assert previous is not None
    return rewrite_rules(previous, last, lower_words(messages))


@pytest.mark.parametrize(
    ("previous", "followup", "standalone"),
    [
        # A new name replaces the old one, in the possessive too.
        ("What is Brindlewick's mileage rate?", "And for Corvale?", "What is Corvale's mileage rate?"),
        ("What is Brindlewick's mileage rate?", "And Corvale's?", "What is Corvale's mileage rate?"),
        ("What is Brindlewick's mileage rate?", "Corvale?", "What is Corvale's mileage rate?"),
        (
            "How large is the referral bonus at Corvale Foods?",
            "What about Brindlewick?",
            "How large is the referral bonus at Brindlewick?",
        ),
        (
            "What is the hotel budget per night in Paris?",
            "And in Lyon?",
            "What is the hotel budget per night in Lyon?",
        ),
        # The previous question names nobody: it is asked about the new name.
        (
            "What is the hotel budget per night?",
            "and for Corvale?",
            "What is the hotel budget per night for Corvale?",
        ),
        # A new topic without a name is asked about the previous question's name.
        (
            "What is Corvale's mileage rate?",
            "And the night-shift bonus?",
            "The night-shift bonus for Corvale?",
        ),
        (
            "How much weight can the Kestrel robot carry?",
            "And how long does it run on one charge?",
            "How long does Kestrel run on one charge?",
        ),
        # A follow-up with its own name and topic stands alone.
        (
            "What is Brindlewick's mileage rate?",
            "And the night-shift bonus at Corvale?",
            "The night-shift bonus at Corvale?",
        ),
        # Nothing to substitute, or a narrowing of the previous question: searched together with it.
        (
            "What is the hotel budget per night in Paris?",
            "And elsewhere?",
            "What is the hotel budget per night in Paris? Elsewhere?",
        ),
        (
            "How long is the warranty on robots?",
            "And for batteries?",
            "How long is the warranty on robots? For batteries?",
        ),
    ],
)
def test_rules_make_a_followup_standalone(previous: str, followup: str, standalone: str) -> None:
    assert by_rules(previous, followup) == standalone


@pytest.mark.parametrize(
    "question",
    [
        "How long is the probation period?",
        "How long does it take to get a replacement badge?",  # "it" refers to nothing
        "Is it possible to work from another country for two months?",
        "Which VPN client do I use to reach internal services?",
    ],
)
def test_rules_leave_standalone_questions_alone(question: str) -> None:
    assert not looks_like_followup(question)
    assert by_rules("What is Corvale's mileage rate?", question) == question


def test_a_chain_of_followups_keeps_its_topic() -> None:
    chain = ("What is Brindlewick's mileage rate?", "And for Corvale?", "What about Brindlewick Logistics?")
    assert by_rules(*chain) == "What is Brindlewick Logistics' mileage rate?"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("What is Corvale's mileage rate? " * 20, "too long"),
        ("What is Corvale's mileage rate", "not a question"),
        ("What is Brindlewick's mileage rate?", "drops Corvale"),
        ("What is Corvale's mileage rate for trucks?", "adds truck"),
        ("What is Corvale's mileage rate?", None),
    ],
)
def test_a_model_rewrite_is_used_only_when_it_keeps_the_new_name_and_adds_nothing(
    text: str, why: str | None
) -> None:
    said = content_words("What is Brindlewick's mileage rate? And for Corvale?")
    assert check_model_rewrite(text, "And for Corvale?", said, set()) == why


class StubGateway:
    """Answers /v1/generate with a fixed text (or error) and keeps the requests."""

    def __init__(self, text: str = "", error: ReasonCode | None = None) -> None:
        self.text, self.error = text, error
        self.requests: list[GenerateRequest] = []
        self.circuit_open = False

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        self.requests.append(req)
        if self.error is not None:
            raise UpstreamError(self.error, "down")
        return GenerateResponse(status="ok", text=self.text, answered_by="model")


def test_a_model_rewrite_that_copies_the_earlier_question_is_not_used() -> None:
    said = content_words("How long is the warranty on robots? And for batteries?")
    why = check_model_rewrite("How long is the warranty on robots?", "And for batteries?", said, set())
    assert why == "drops battery"


MILEAGE = conversation("What is Brindlewick's mileage rate?", "0.42 euros per kilometre.", "And for Corvale?")
# The rules can only search this one together with the earlier question: there `auto` asks the model.
BATTERIES = conversation("How long is the warranty on robots?", "Two years.", "And for batteries?")
JOINED = "How long is the warranty on robots? For batteries?"


def rewriter(gateway: StubGateway, mode: str) -> Followups:
    return Followups(QuerySettings(followup_rewrite=mode), gateway)  # type: ignore[arg-type]


async def test_the_models_rewrite_is_used_when_it_passes_the_checks() -> None:
    gw = StubGateway(" How long is the warranty on batteries?\n")
    assert await rewriter(gw, "auto").standalone(BATTERIES) == "How long is the warranty on batteries?"
    req = gw.requests[0]
    assert req.max_tokens == 48 and req.stop == ["\n"] and req.temperature == 0
    assert req.messages is not None and "And for batteries?" in req.messages[-1].content


@pytest.mark.parametrize(
    "gateway",
    [StubGateway("How long is the warranty on robots?"), StubGateway(error=ReasonCode.PROVIDER_TIMEOUT)],
)
async def test_an_unusable_rewrite_or_a_failed_gateway_falls_back_to_the_rules(gateway: StubGateway) -> None:
    assert await rewriter(gateway, "auto").standalone(BATTERIES) == JOINED
    assert len(gateway.requests) == 1


async def test_modes_decide_whether_the_model_is_asked() -> None:
    gw = StubGateway("How long is the warranty on batteries?")
    assert await rewriter(gw, "rules").standalone(BATTERIES) == JOINED
    assert await rewriter(gw, "off").standalone(BATTERIES) == "And for batteries?"
    # auto: not when the rules resolve it, not for a standalone question, not for a first question.
    assert await rewriter(gw, "auto").standalone(MILEAGE) == "What is Corvale's mileage rate?"
    standalone = conversation(
        "What is Brindlewick's mileage rate?", "0.42.", "How long is the probation period?"
    )
    assert await rewriter(gw, "auto").standalone(standalone) == "How long is the probation period?"
    assert await rewriter(gw, "auto").standalone(conversation("And for Corvale?")) == "And for Corvale?"
    assert gw.requests == []
    gw.circuit_open = True  # nor while the gateway's circuit is open
    assert await rewriter(gw, "auto").standalone(BATTERIES) == JOINED
    assert gw.requests == []
    gw.circuit_open = False
    assert await rewriter(gw, "auto").standalone(BATTERIES) == "How long is the warranty on batteries?"
    await rewriter(gw, "model").standalone(standalone)
    assert len(gw.requests) == 2  # "model" asks for every message after the first


# --- against real processes ----------------------------------------------------------------------------------

LOOKALIKES = [
    {
        "id": f"{key}-{topic}",
        "title": f"{short} {title}",
        "text": text.format(company=company, value=values[key]),
    }
    for key, company, short in [
        ("brindlewick", "Brindlewick Logistics", "Brindlewick"),
        ("corvale", "Corvale Foods", "Corvale"),
    ]
    for topic, title, text, values in [
        (
            "night-shift",
            "night-shift bonus",
            "{company} pays a night-shift bonus of {value} on top of the normal hourly wage. "
            "The bonus applies to every hour worked between 23:00 and 6:00.",
            {"brindlewick": "25 percent", "corvale": "18 percent"},
        ),
        (
            "mileage",
            "mileage policy",
            "{company} reimburses business journeys made in a private car at {value} per kilometre. "
            "Claims are filed once a month in the travel tool.",
            {"brindlewick": "0.42 euros", "corvale": "0.38 euros"},
        ),
    ]
]


@pytest.fixture(scope="module")
def lookalike_qs(
    toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("followups") / "qs.sqlite3", QS_CACHE_SIZE="0")
    for doc in LOOKALIKES:
        httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20).raise_for_status()
    yield srv
    srv.stop()


TWO_TURNS = [
    {"role": "user", "content": "How big is the night-shift bonus at Brindlewick?"},
    {"role": "assistant", "content": "Brindlewick Logistics pays a night-shift bonus of 25 percent."},
    {"role": "user", "content": "And at Corvale?"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_a_followup_retrieves_and_cites_the_right_lookalike(
    lookalike_qs: ServerProcess, stream: bool
) -> None:
    resp = httpx.post(
        f"{lookalike_qs.url}/v1/chat", json={"messages": TWO_TURNS, "stream": stream}, timeout=30
    )
    if stream:
        events = [line for line in resp.text.split("\n") if line.startswith("data:")]
        done = json.loads(events[-1][5:])
        citations = next(json.loads(e[5:]) for e in events if '"citations"' in e and "chunk_id" in e)
        body: dict[str, Any] = {"status": done["status"], **citations}
        body["answer"] = "".join(json.loads(e[5:]).get("text", "") for e in events if '"text"' in e)
    else:
        body = resp.json()
    assert body["status"] == "ok"
    # Searched as "How big is the night-shift bonus at Corvale?": Corvale's night-shift policy, not its
    # mileage policy (what "And at Corvale?" alone finds first) nor Brindlewick's bonus.
    assert [c["chunk_id"] for c in body["citations"]] == ["corvale-night-shift:0"]
    assert "18 percent" in body["answer"]
    log = [json.loads(line) for line in lookalike_qs.log_text().splitlines() if "followup_rewrite" in line]
    assert log[-1]["question"] == "And at Corvale?"
    assert log[-1]["rewritten"] == "How big is the night-shift bonus at Corvale?"


def test_without_the_rewrite_the_same_followup_finds_the_wrong_policy(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    """The control: what the test above would see if QS searched the last message as it is."""
    srv = start_qs(toy_gateway.url, tmp_path / "qs.sqlite3", QS_FOLLOWUP_REWRITE="off", QS_CACHE_SIZE="0")
    try:
        for doc in LOOKALIKES:
            httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20).raise_for_status()
        body = httpx.post(f"{srv.url}/v1/chat", json={"messages": TWO_TURNS}, timeout=30).json()
    finally:
        srv.stop()
    assert [c["chunk_id"] for c in body["citations"]] != ["corvale-night-shift:0"]


def test_a_chain_of_long_followups_is_searched_within_the_question_cap(lookalike_qs: ServerProcess) -> None:
    """Each follow-up the rules cannot resolve is searched together with the one before: 8 of 4,000
    characters once made a 31,895-character search query, past the cap on any question QS is asked."""
    messages: list[dict[str, str]] = []
    for i in range(8):
        words = f"and the night-shift bonus rule {i} for hours worked late " * 80
        messages.append({"role": "user", "content": ("And " + words)[:3_900]})
        messages.append({"role": "assistant", "content": "Noted."})
    resp = httpx.post(f"{lookalike_qs.url}/v1/chat", json={"messages": messages[:-1]}, timeout=60)
    assert resp.status_code == 200, resp.text
    log = [json.loads(line) for line in lookalike_qs.log_text().splitlines() if "followup_rewrite" in line]
    assert log[-1]["question"] == " ".join(messages[-2]["content"].split())
    assert len(log[-1]["rewritten"]) <= MAX_QUESTION_CHARS
    assert log[-1]["rewritten"].endswith(log[-1]["question"][-3_000:])  # the newest follow-up is kept

"""The prompt keeps the sources whole and the newest turns that fit (prompt_budget.py); a long conversation
against real QS, gateway and OpenAI-compatible server processes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from cairn_core import ChatMessage, ContextChunk
from cairn_query.chat.prompt_budget import (
    RESERVE_TOKENS,
    conversation_budget,
    fit_conversation,
    message_tokens,
    sources_tokens,
)
from cairn_testing import ServerProcess

from .conftest import DOCS, start_gateway, start_qs


def turns(n: int, chars: int = 400) -> list[ChatMessage]:
    """`n` user/assistant turns, oldest first, each `chars` long and labelled with its number."""
    return [
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"turn-{i:02d} " + "x" * (chars - 8))
        for i in range(n)
    ]


def labels(messages: list[ChatMessage]) -> list[str]:
    return [m.content[:7] for m in messages]


QUESTION = ChatMessage(role="user", content="How many days of paid leave do employees get?")


def test_everything_fits_nothing_is_dropped() -> None:
    messages = [*turns(4), QUESTION]
    assert fit_conversation(messages, 10_000) == messages


def test_the_newest_turns_that_fit_are_kept_and_the_oldest_dropped() -> None:
    messages = [*turns(10), QUESTION]
    each = message_tokens(messages[0])
    kept = fit_conversation(messages, message_tokens(QUESTION) + 4 * each + each // 2)
    assert labels(kept) == ["turn-06", "turn-07", "turn-08", "turn-09", "How man"]


def test_a_kept_history_starts_with_a_user_turn() -> None:
    messages = [*turns(10), QUESTION]
    each = message_tokens(messages[0])
    # turn-07 to turn-09 would fit, but turn-07 is an answer whose question is dropped: it goes too.
    kept = fit_conversation(messages, message_tokens(QUESTION) + 3 * each)
    assert labels(kept) == ["turn-08", "turn-09", "How man"]
    assert labels(fit_conversation(messages, message_tokens(QUESTION) + each)) == ["How man"]


def test_the_question_always_stays_and_system_messages_come_first() -> None:
    system = ChatMessage(role="system", content="Answer in French.")
    messages = [system, *turns(6), QUESTION]
    assert fit_conversation(messages, 0) == [QUESTION]
    kept = fit_conversation(messages, message_tokens(QUESTION) + message_tokens(system) + 1)
    assert kept == [system, QUESTION]


def test_the_conversation_gets_what_the_sources_leave() -> None:
    chunks = [ContextChunk(chunk_id="leave:0", title="Leave", text="y" * 4000)]
    assert sources_tokens(chunks) >= 1000
    assert conversation_budget(3000, chunks) == 3000 - RESERVE_TOKENS - sources_tokens(chunks)


def test_a_long_conversation_answers_from_its_sources_with_its_newest_turns(
    fake: ServerProcess, tmp_path: Path
) -> None:
    gw = start_gateway(fake)
    srv = start_qs(gw.url, tmp_path / "qs.sqlite3", QS_CACHE_SIZE="0")
    try:
        for doc in DOCS:
            httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=20).raise_for_status()
        # 40 turns of 700 characters (about 7,000 tokens with the question): twice the default budget.
        history = turns(40, chars=700)
        messages = [{"role": m.role, "content": m.content} for m in [*history, QUESTION]]
        body = httpx.post(f"{srv.url}/v1/chat", json={"messages": messages}, timeout=30).json()
        sent = httpx.get(f"{fake.url}/_stats", timeout=5).json()["last_body"]["messages"]
    finally:
        srv.stop()
        gw.stop()
    assert body["status"] == "ok" and body["citations"][0]["chunk_id"] == "leave:0"
    # What the model got: the gateway's system message with the sources whole, then the newest turns.
    assert sent[0]["role"] == "system" and "[leave:0]" in sent[0]["content"]
    assert "Employees get 25 days of paid leave per year." in sent[0]["content"]
    kept = [m["content"][:7] for m in sent[1:]]
    assert kept[-1] == "How man" and kept[-2] == "turn-39"
    assert sent[1]["role"] == "user" and "turn-00" not in kept
    assert kept[:-1] == [f"turn-{i:02d}" for i in range(40 - len(kept) + 1, 40)]  # contiguous, newest last
    assert 8 <= len(kept) - 1 <= 20  # about 2,650 tokens of 179-token turns
    trimmed = [json.loads(line) for line in srv.log_text().splitlines() if "conversation_trimmed" in line]
    assert trimmed[-1]["dropped"] == 41 - len(kept) and trimmed[-1]["kept"] == len(kept)

"""The conversation that fits the prompt: the sources whole, then the newest turns, oldest dropped first.

A long conversation plus the sources can pass the model's context (the gateway's LLM_CONTEXT_SIZE), which
ends in TOKEN_LIMIT and a fallback for every later question of that conversation. The sources are what the
answer must come from, so they always go whole; the conversation gets what is left of `QS_PROMPT_TOKENS`, and
it is filled from the newest turn back. The last user message (the question) always goes; the caller's own
system messages go first, when they fit, since they say how to answer; a kept history never starts with an
assistant turn (chat templates expect a user turn first).

Tokens are estimated at about 4 characters each, as for the whole-chunk budget (chat.budget), plus a few per
message for the role markers the gateway renders.
"""

from __future__ import annotations

from cairn_core import ChatMessage, ContextChunk

CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 4  # "Q: " / "A: " or a chat template's turn markers
# What the gateway adds around a grounded request: its instructions, the worked example, the source labels.
RESERVE_TOKENS = 300


def tokens_of(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def message_tokens(m: ChatMessage) -> int:
    return tokens_of(m.content) + PER_MESSAGE_TOKENS


def sources_tokens(chunks: list[ContextChunk]) -> int:
    return sum(tokens_of(f"[{c.chunk_id}] {c.title or ''}\n{c.text}") for c in chunks)


def fit_conversation(messages: list[ChatMessage], tokens: int) -> list[ChatMessage]:
    """The messages that fit in `tokens`: the last user message and what follows it always, then the
    caller's system messages, then the newest earlier turns; in their original order."""
    last = max(i for i, m in enumerate(messages) if m.role == "user" and m.content.strip())
    keep = set(range(last, len(messages)))
    left = tokens - sum(message_tokens(messages[i]) for i in keep)
    for i, m in enumerate(messages[:last]):
        if m.role == "system" and message_tokens(m) <= left:
            keep.add(i)
            left -= message_tokens(m)
    turns: list[int] = []
    for i in range(last - 1, -1, -1):
        m = messages[i]
        if m.role == "system":
            continue
        if message_tokens(m) > left:
            break  # older turns would leave a gap: the history stays contiguous
        turns.append(i)
        left -= message_tokens(m)
    while turns and messages[turns[-1]].role == "assistant":
        turns.pop()  # the oldest kept turn is an answer without its question
    keep.update(turns)
    return [m for i, m in enumerate(messages) if i in keep]


def conversation_budget(prompt_tokens: int, sources: list[ContextChunk]) -> int:
    """What the conversation may use once the sources and the gateway's own text are counted."""
    return prompt_tokens - RESERVE_TOKENS - sources_tokens(sources)

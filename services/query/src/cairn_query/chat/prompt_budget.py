"""The conversation that fits the prompt: the sources whole, then the newest turns, oldest dropped first.

A long conversation plus the sources can pass the model's context (the gateway's LLM_CONTEXT_SIZE), which
ends in TOKEN_LIMIT and a fallback for every later question of that conversation. The sources are what the
answer must come from, so they always go whole; the conversation gets what is left of `QS_PROMPT_TOKENS`, and
it is filled from the newest turn back. The last user message (the question) always goes; the caller's own
system messages go first, when they fit, since they say how to answer; a kept history never starts with an
assistant turn (chat templates expect a user turn first).

Tokens are estimated at about 4 characters each, as for the whole-chunk budget (`fit_chunks`), plus a few per
message for the role markers the gateway renders. `generate_request` puts the two together for the gateway.
"""

from __future__ import annotations

import structlog
from cairn_core import ChatMessage, ContextChunk, GenerateRequest

from cairn_query.corpus.retrieval import Hit
from cairn_query.schemas import ChatRequest
from cairn_query.settings import QuerySettings

log = structlog.get_logger("chat")

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


def fit_chunks(hits: list[Hit], tokens: int) -> list[ContextChunk]:
    """The best chunks that fit in `tokens` (about 4 characters each); the first one always goes, cut if need be."""
    out: list[ContextChunk] = []
    left = tokens * CHARS_PER_TOKEN
    for hit in hits:
        text = hit.chunk.text
        if len(text) > left:
            if out:
                continue
            text = text[:left]
        out.append(
            ContextChunk(chunk_id=hit.chunk.chunk_id, title=hit.chunk.heading, url=hit.chunk.url, text=text)
        )
        left -= len(text)
    return out


def generate_request(
    settings: QuerySettings, req: ChatRequest, context: list[ContextChunk], stream: bool
) -> GenerateRequest:
    """What the gateway is asked: the sources whole, the conversation's newest turns in what is left."""
    conversation = req.conversation()
    messages = fit_conversation(conversation, conversation_budget(settings.prompt_tokens, context))
    if len(messages) < len(conversation):
        log.info("conversation_trimmed", kept=len(messages), dropped=len(conversation) - len(messages))
    if not req.citations_required:
        # The gateway renders sources only for grounded requests; without citations QS adds them itself.
        sources = "\n\n".join(f"[{c.chunk_id}] {c.title or ''}\n{c.text}" for c in context)
        system = f"Answer using the sources below when they help.\n\nSources:\n{sources}"
        messages = [ChatMessage(role="system", content=system), *messages]
    return GenerateRequest(
        messages=messages,
        model=req.model or settings.model,
        max_tokens=req.max_tokens or settings.max_tokens,
        stream=stream,
        timeout_ms=settings.gateway_timeout_ms,
        citations_required=req.citations_required,
        context_chunks=context if req.citations_required else [],
    )

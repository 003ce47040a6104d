"""Conversations: questions asked in a stored thread, answered like `/v1/chat` with the thread as context.

`POST /v1/conversations/{id}/messages` stores the question, turns the thread into a `ChatRequest` (its user
questions and the answers the model gave; fallback messages are QS's words, not the model's, and stay out),
and answers it through the chat service, stream or not. The answer is stored when it is final, through the
turn's `on_answer` hook, so a stream that is stopped halfway stores nothing half-written: the hook runs
once the audit record is written, before `done`, and not at all when a failed record withholds the answer.

The thread sent is cut to what a chat request may carry (schemas.py: 50 messages, 32,000 characters),
newest first; the prompt budget then decides how much of it reaches the model (chat/prompt_budget.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from cairn_core import CairnError, ChatMessage, ReasonCode

from cairn_query.chat.turn import Turn
from cairn_query.schemas import MAX_CONVERSATION_CHARS, MAX_MESSAGE_CHARS, ChatRequest, MessageIn
from cairn_query.store import Store

MAX_TURNS = 50
TITLE_CHARS = 60
DEFAULT_TITLE = "New chat"


def not_found(conv_id: str) -> CairnError:
    return CairnError(ReasonCode.NOT_FOUND, f"No conversation with id {conv_id!r}.")


def thread(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """The newest turns that fit a chat request, oldest first; answers that were fallbacks are left out."""
    kept: list[ChatMessage] = []
    chars = 0
    for m in reversed(messages):
        if m["role"] == "assistant" and m.get("status") != "ok":
            continue
        content = m["content"][:MAX_MESSAGE_CHARS]
        if len(kept) == MAX_TURNS or chars + len(content) > MAX_CONVERSATION_CHARS:
            break
        kept.append(ChatMessage(role=m["role"], content=content))
        chars += len(content)
    kept.reverse()
    while kept and kept[0].role != "user":  # a thread starts with a question
        kept.pop(0)
    return kept


class Conversations:
    """One owner's conversations: every call is scoped to `owner`, and another owner's is NOT_FOUND."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def listing(self, owner: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await asyncio.to_thread(self.store.conversations.of_owner, owner, limit, offset)

    async def create(self, owner: str, title: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.conversations.create, owner, title)

    async def get(self, owner: str, conv_id: str) -> dict[str, Any]:
        conv = await asyncio.to_thread(self.store.conversations.get, owner, conv_id)
        if conv is None:
            raise not_found(conv_id)
        return conv

    async def rename(self, owner: str, conv_id: str, title: str) -> dict[str, Any]:
        if not await asyncio.to_thread(self.store.conversations.rename, owner, conv_id, title):
            raise not_found(conv_id)
        return await self.get(owner, conv_id)

    async def delete(self, owner: str, conv_id: str) -> None:
        if not await asyncio.to_thread(self.store.conversations.delete, owner, conv_id):
            raise not_found(conv_id)

    async def ask(self, owner: str, conv_id: str, body: MessageIn, turn: Turn) -> ChatRequest:
        """Store the question (or, to regenerate, leave out the last answer) and return the request to
        answer; the turn then stores the answer, replacing the regenerated one only then."""
        table = self.store.conversations
        conv = await self.get(owner, conv_id)
        if body.regenerate:
            # The previous answer stays stored until the new one is final (in `keep`): a regeneration that is
            # stopped, or that fails before its end, leaves the question with the answer it had.
            if conv["messages"] and conv["messages"][-1]["role"] == "assistant":
                conv["messages"].pop()
            if not conv["messages"] or conv["messages"][-1]["role"] != "user":
                raise CairnError(ReasonCode.BAD_REQUEST, "There is no question to answer again.")
        else:
            question = (body.content or "").strip()
            if not await asyncio.to_thread(table.add_message, owner, conv_id, "user", question):
                raise not_found(conv_id)
            if conv["title"] == DEFAULT_TITLE and not conv["messages"]:
                title = question if len(question) <= TITLE_CHARS else question[: TITLE_CHARS - 1] + "…"
                await asyncio.to_thread(table.rename, owner, conv_id, title)
            conv["messages"].append({"role": "user", "content": question})

        def replace(answer: dict[str, Any]) -> None:
            meta = {k: v for k, v in answer.items() if k not in ("answer", "request_id")}
            if body.regenerate:
                table.drop_last_answer(owner, conv_id)
            table.add_message(owner, conv_id, "assistant", answer["answer"], answer["request_id"], meta)

        async def keep(answer: dict[str, Any]) -> None:
            await asyncio.to_thread(replace, answer)

        turn.on_answer = keep
        return ChatRequest(
            messages=thread(conv["messages"]),
            stream=body.stream,
            collection=body.collection,
            filters=body.filters,
            top_k=body.top_k,
            model=body.model,
            cache=not body.regenerate,
        )

"""Extractive grounded answers for small in-process models: the model picks the sentence, the answer quotes it.

A 270M model that writes its own answer copies a neighbouring number or invents one, and a JSON grammar over
a 262k-token vocabulary cuts its speed by 3-4x. Choosing is what it does well enough: the sources are numbered
sentence by sentence, the prompt ends in `Answer: [`, and one forward pass gives the logits of the digits
1..N. The best sentence becomes the answer, cited to its chunk, and the provider writes it out as the
contract's `{answer, citations}` JSON, so everything after the provider (parsing, citation checks, the
support check in QS) is the same as for any other provider.

The instructions and the worked examples come first and never change, so llama.cpp keeps their KV cache
from one request to the next and only the sentences and the question are evaluated (docs/models.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cairn_core import ChatMessage, ContextChunk, join_sentences, split_sentences

# Digits 1-9 are one token each in every tokenizer we ship for: the choice is one forward pass.
MAX_SENTENCES = 9

# The worked examples' answers sit at different positions, so the model learns to read, not to repeat a digit.
PREFIX = (
    "Pick the sentence that answers the question.\n\n"
    "Sentences:\n"
    "[1] Opening hours: The library opens at 9 am and closes at 6 pm on weekdays.\n"
    "[2] Opening hours: On Saturdays the library opens at 10 am.\n"
    "[3] Library cards: A library card costs 5 euros per year and is free for students.\n"
    "Question: How much do I pay for a card?\n"
    "Answer: [3]\n\n"
    "Sentences:\n"
    "[1] Parking: Visitors may park for up to two hours in front of the main entrance.\n"
    "[2] Parking: Staff park in the north car park.\n"
    "Question: How long can guests leave their car at the front?\n"
    "Answer: [1]\n\n"
    "Sentences:\n"
)


@dataclass(frozen=True, slots=True)
class Numbered:
    chunk_id: str
    title: str | None
    text: str


def number_sentences(chunks: list[ContextChunk], limit: int = MAX_SENTENCES) -> list[Numbered]:
    """The chunks' sentences in the order given (QS sends the best first), at most `limit`."""
    out: list[Numbered] = []
    for chunk in chunks:
        for sentence in split_sentences(chunk.text):
            if len(out) == limit:
                return out
            out.append(Numbered(chunk.chunk_id, chunk.title, sentence))
    return out


def question_of(messages: list[ChatMessage]) -> str:
    """The last user message: what the sentence must answer."""
    for m in reversed(messages):
        if m.role == "user":
            return " ".join(m.content.split())
    return ""


def render(sentences: list[Numbered], question: str) -> str:
    """The whole prompt; everything up to `PREFIX`'s end is the same for every request."""
    lines = [
        f"[{i}] {s.title}: {s.text}" if s.title else f"[{i}] {s.text}"
        for i, s in enumerate(sentences, start=1)
    ]
    return PREFIX + "\n".join(lines) + f"\nQuestion: {question}\nAnswer: ["


def quote(sentences: list[Numbered], choice: int, most: int) -> list[Numbered]:
    """The chosen sentence and, up to `most` in all, the next ones of the same chunk in the order given:
    a fact is often split over two sentences ("Fernhill offers 20 weeks…" / "It can be split…"). A lead-in
    ("… is as follows:") comes with the sentence after it, which QS sends right behind it (evidence.py)."""
    chosen = sentences[choice]
    rest = [s for i, s in enumerate(sentences) if i != choice and s.chunk_id == chosen.chunk_id]
    after = sentences[choice + 1] if choice + 1 < len(sentences) else None
    if chosen.text.rstrip().endswith(":") and after is not None and after.chunk_id == chosen.chunk_id:
        rest = [after, *(s for s in rest if s is not after)]
    return [chosen, *rest[: max(0, most - 1)]]


def as_grounded_json(quoted: list[Numbered]) -> str:
    """The quoted sentences in the contract's citation JSON, as any provider would have written it."""
    answer = join_sentences(s.text for s in quoted)  # a quoted grammar line is not glued to the next sentence
    return json.dumps({"answer": answer, "citations": [{"chunk_id": quoted[0].chunk_id}]}, ensure_ascii=False)

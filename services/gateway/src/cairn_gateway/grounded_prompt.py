"""How a grounded request becomes messages for a model.

The gateway owns this, not the query service, because the right wording is a property of the model: the
query service sends the question and the retrieved chunks; here they become one system message with the
numbered sources and the output format, followed by the conversation. Providers for base models (llamacpp)
render these messages further into a plain completion prompt.
"""

from __future__ import annotations

from cairn_core import ChatMessage, ContextChunk, GenerateRequest

GROUNDED_INSTRUCTIONS = (
    'Answer the question using only the sources below. Reply with a JSON object whose "answer" is your '
    'answer in one or two sentences, taken from the sources, and whose "citations" lists the sources you '
    'used by their id ("chunk_id"). Cite only ids listed below. If the sources do not contain the answer, '
    "say so in the answer and cite the closest source."
)


def render_sources(chunks: list[ContextChunk], max_chars_per_chunk: int = 1500) -> str:
    lines = []
    for chunk in chunks:
        title = f" {chunk.title}" if chunk.title else ""
        lines.append(f"[{chunk.chunk_id}]{title}\n{chunk.text[:max_chars_per_chunk].strip()}")
    return "\n\n".join(lines)


def build_messages(req: GenerateRequest) -> list[ChatMessage]:
    messages = req.as_messages()
    if not req.citations_required:
        return messages
    system = f"{GROUNDED_INSTRUCTIONS}\n\nSources:\n{render_sources(req.context_chunks)}"
    # A caller's own system message keeps its place after ours; ours defines the output contract.
    return [ChatMessage(role="system", content=system), *messages]

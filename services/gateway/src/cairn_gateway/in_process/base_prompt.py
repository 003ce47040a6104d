"""Prompts for base models, and stop strings applied to streamed text.

Small base models such as Gemma 3 270M have no chat template: a plain completion prompt gets useful answers
(see docs/models.md), and they keep writing the next "Q:" after their answer, so the format's own stop strings
end it.
"""

from __future__ import annotations

from cairn_core import ChatMessage

# A base model keeps writing the next "Q:" after its answer; these end a plain answer (reported as eos).
FORMAT_STOPS = ("\nQ:", "\n\n")


def render_prompt(messages: list[ChatMessage], grounded: bool = False) -> str:
    """Messages → one completion prompt for a base model.

    System text goes first as plain text (for grounded requests: the instructions and numbered sources
    from grounded_prompt.py), then the conversation as `Q: …` / `A: …` lines, ending with `A:` for the model to
    complete. A grounded prompt asks for the JSON object that the grammar then enforces.
    """
    parts: list[str] = []
    for m in messages:
        text = m.content.strip()
        if m.role == "system":
            parts.append(text + "\n")
        elif m.role == "assistant":
            parts.append(f"A: {text}\n")
        else:
            parts.append(f"Q: {text}\n")
    parts.append("A (JSON):" if grounded else "A:")
    body = "\n".join(p.rstrip("\n") for p in parts[:-1]) + "\n" + parts[-1]
    # A base model follows an example far better than an instruction: one worked example shows it that the
    # answer is a sentence taken from a source, not a placeholder or a number.
    return (GROUNDED_EXAMPLE + body) if grounded else body


GROUNDED_EXAMPLE = (
    "Example.\nSources:\n[example:1] Opening hours\nThe library opens at 9 am and closes at 6 pm on weekdays.\n"
    "Q: When does the library open?\n"
    'A (JSON): {"answer": "The library opens at 9 am on weekdays.", "citations": [{"chunk_id": "example:1"}]}\n\n'
)


class StopScanner:
    """Cuts the text at the first stop string and holds back a tail that could be the start of one."""

    def __init__(self, user_stops: list[str], format_stops: tuple[str, ...] = FORMAT_STOPS) -> None:
        # A raw prompt (`/v1/completions`) has no Q/A format, so only the caller's stops end it.
        self.user = [s for s in user_stops if s]
        self.stops = [*self.user, *format_stops]
        self.buf = ""
        self.hit: str | None = None

    def feed(self, text: str) -> str:
        self.buf += text
        first = min(
            ((i, s) for s in self.stops if (i := self.buf.find(s)) != -1), default=None, key=lambda x: x[0]
        )
        if first is not None:
            out, self.hit, self.buf = self.buf[: first[0]], first[1], ""
            return out
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.buf.endswith(s[:k])), default=0)
        out, self.buf = self.buf[: len(self.buf) - hold], self.buf[len(self.buf) - hold :]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out

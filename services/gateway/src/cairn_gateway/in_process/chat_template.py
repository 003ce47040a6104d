"""Which prompt format a GGUF gets, and its own chat template when it has one.

An instruct GGUF carries the chat template it was tuned on in its metadata (`tokenizer.chat_template`, the
Jinja text of Hugging Face's tokenizer_config.json). Rendered any other way, such a model sees a format it
was never trained on and answers worse, so when the template is there (LLM_PROMPT_FORMAT=auto) chat
messages go through it, rendered by llama-cpp-python's own `Jinja2ChatFormatter` with the model's bos/eos
token texts. A GGUF without one (the packaged base Gemma 3 270M) keeps the `Q: … A:` format of base_prompt.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from cairn_core import CairnError, ChatMessage, ReasonCode

PromptFormat = Literal["base", "chat_template"]
FORMATS: tuple[str, ...] = ("auto", "base", "chat_template")
TEMPLATE_KEY = "tokenizer.chat_template"


def choose_format(setting: str, metadata: Mapping[str, str], path: object) -> PromptFormat:
    """`auto` is the template when the GGUF has one; asking for a template the file lacks is an error,
    not a silent fallback, because the operator expects answers in the model's own format."""
    if setting not in FORMATS:
        raise CairnError(
            ReasonCode.MODEL_REJECTED, f"prompt_format={setting!r}: expected one of {', '.join(FORMATS)}."
        )
    has_template = bool(metadata.get(TEMPLATE_KEY, "").strip())
    if setting == "chat_template" and not has_template:
        raise CairnError(
            ReasonCode.MODEL_REJECTED,
            f"LLM_PROMPT_FORMAT=chat_template, but {path} has no {TEMPLATE_KEY} in its metadata: "
            "use LLM_PROMPT_FORMAT=base or auto for a base model.",
        )
    if setting == "base" or not has_template:
        return "base"
    return "chat_template"


class ChatTemplate:
    """A GGUF's chat template, rendered to the text whose tokens the model sees.

    The rendered text may start with the bos token's text (most templates write `{{ bos_token }}`); it is
    taken off and the tokenizer adds the token itself, as llama.cpp's server does, so that a template with
    and one without it both give exactly one bos.
    """

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        import jinja2
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self._formatter = Jinja2ChatFormatter(
                template=template, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=True
            )
        except jinja2.TemplateError as exc:
            raise CairnError(
                ReasonCode.MODEL_REJECTED, f"The GGUF's chat template does not parse: {exc}"
            ) from None
        self.bos_token = bos_token

    @classmethod
    def of(cls, llm: Any) -> ChatTemplate:
        """The template of a loaded `Llama`, with its bos/eos token texts (e.g. `<bos>`, `<eos>`)."""

        def text(token_id: int) -> str:
            return (
                llm.detokenize([token_id], special=True).decode("utf-8", "replace") if token_id >= 0 else ""
            )

        return cls(llm.metadata[TEMPLATE_KEY], text(llm.token_bos()), text(llm.token_eos()))

    def render(self, messages: list[ChatMessage]) -> str:
        import jinja2

        # What a template may raise: its own raise_exception() is a ValueError, a bad variable a TypeError.
        refused = (jinja2.TemplateError, ValueError, TypeError)
        try:
            text = self._render(messages)
        except refused as first:
            # Some templates refuse a system role (raise_exception("...roles must alternate...")): the
            # system text then leads the first user turn, which is what Gemma's own template does anyway.
            folded = fold_system(messages)
            if folded == messages:
                raise _rejected(first) from None
            try:
                text = self._render(folded)
            except refused as second:
                raise _rejected(second) from None
        if self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    def _render(self, messages: list[ChatMessage]) -> str:
        dicts: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        return str(self._formatter(messages=dicts).prompt)


def fold_system(messages: list[ChatMessage]) -> list[ChatMessage]:
    """System messages joined into the first user message (or one of their own, as user, if none)."""
    system = [m.content.strip() for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return messages
    head = "\n\n".join(system)
    if rest and rest[0].role == "user":
        return [ChatMessage(role="user", content=f"{head}\n\n{rest[0].content}"), *rest[1:]]
    return [ChatMessage(role="user", content=head), *rest]


def _rejected(exc: Exception) -> CairnError:
    return CairnError(ReasonCode.BAD_REQUEST, f"The model's chat template refused these messages: {exc}")

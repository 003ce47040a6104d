"""The OpenAI-compatible API's wire models: `/v1/chat/completions` and `/v1/completions`, asked and answered."""

from __future__ import annotations

from typing import Any, Literal

from cairn_core import ChatMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator


class OpenAIMessage(BaseModel):
    # Kept, not ignored: a tool conversation's `tool_calls`, `tool_call_id` and `name` go to openai_compat.
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_have_text(cls, v: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        if isinstance(v, list) and any(
            p.get("type") == "text" and not isinstance(p.get("text"), str) for p in v
        ):
            raise ValueError("a content part of type 'text' needs a string 'text'")
        return v

    def to_chat(self) -> ChatMessage:
        content = self.content
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        if self.role in ("system", "developer"):
            return ChatMessage(role="system", content=content or "")
        return ChatMessage(role="assistant" if self.role == "assistant" else "user", content=content or "")

    def carries_more_than_text(self) -> bool:
        """A tool turn, tool calls, or non-text content parts: what flattening to text would lose."""
        parts = self.content if isinstance(self.content, list) else []
        return self.role == "tool" or bool(self.model_extra) or any(p.get("type") != "text" for p in parts)

    def to_wire(self) -> dict[str, Any]:
        """The message as an OpenAI-compatible upstream takes it: as sent, but for `developer` → `system`,
        which servers such as llama.cpp's and older vLLM do not know."""
        wire = self.model_dump(exclude_none=False)
        if self.role == "developer":
            wire["role"] = "system"
        return wire


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    """What both OpenAI generation endpoints share. Fields beyond these are kept (`extra="allow"`), never
    dropped: openai_fields.py decides which provider receives them and which refuses them."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    # One choice per answer is all the gateway's answer shapes carry; more would be silently lost.
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str] | None:
        return [v] if isinstance(v, str) else v

    def sent(self) -> dict[str, Any]:
        """Every field the client sent, as sent (declared and extra)."""
        return self.model_dump(exclude_unset=True)


class ChatCompletionRequest(_Sampling):
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # Passed to openai_compat upstreams unchanged; a 400 from providers that cannot honour them.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """OpenAI's legacy `/v1/completions`, for base models: one raw prompt, continued as is."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str:
        # A list is OpenAI's batch form; one answer per request is all the gateway gives.
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("give one prompt: a string, or a list of exactly one string")
            v = v[0]
        if not v.strip():
            raise ValueError("'prompt' must not be empty")
        return v


# The upstream's own finish reasons come back as sent (openai_compat); in-process providers give stop or length.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class ChatChoiceMessage(BaseModel):
    """`content` is null when the answer is only tool calls; an upstream's further fields are relayed."""

    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"]
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatChoiceMessage
    finish_reason: FinishReason
    logprobs: dict[str, Any] | None = None


class ChatCompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatCompletionUsage


class ChunkDelta(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` frame of a streamed completion; the last one, with `include_usage`, has no choices."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: ChatCompletionUsage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None  # null in every streamed frame but the last
    logprobs: dict[str, Any] | None = None


class TextCompletion(BaseModel):
    """A `/v1/completions` answer, and each of its streamed frames (the last one, with `include_usage`, has
    no choices and the usage)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: ChatCompletionUsage | None = None


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str
    type: str
    param: str | None = None
    code: str
    reason_code: str
    request_id: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail

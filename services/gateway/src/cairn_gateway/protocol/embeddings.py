"""The embedding APIs' wire models: Cairn's `/v1/embed` and OpenAI's `/v1/embeddings` (one request model)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> list[str]:
        items = [v] if isinstance(v, str) else v
        if not items or any(not isinstance(t, str) or not t.strip() for t in items):
            raise ValueError("'input' must be a non-empty string or a list of non-empty strings")
        return items


class TokenUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    model: str
    dims: int
    usage: TokenUsage


class EmbeddingItem(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str  # a string when `encoding_format` is "base64"


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    model: str
    data: list[EmbeddingItem]
    usage: TokenUsage

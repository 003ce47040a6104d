"""The small interface every provider implements (the catalogue that finds them by name is `catalogue.py`).

A provider turns a `ProviderRequest` into text: `generate()` for one answer, `stream()` for pieces as they are
produced. A provider whose pieces arrive in reads that hold several at once (`openai_compat`) may also offer
`stream_batches()`, the same pieces grouped as they arrived, so that the gateway handles and writes a read's
pieces together (`stream_batches` below picks it, or groups `stream()` one piece per batch). Providers raise
`ProviderError` with a reason code; the engine (engine.py) owns admission, timeouts, circuit breaking, fallbacks
and citation checks, so a provider stays a thin adapter.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cairn_core import ChatMessage, ReasonCode, StopReason, Usage

from ..errors import ProviderError
from ..in_process.threaded import stream_in_thread
from ..settings import ModelSpec


@dataclass(slots=True)
class ProviderRequest:
    messages: list[ChatMessage]
    max_tokens: int
    temperature: float
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # constrain the output where the provider can
    # The caller's own text when it sent `prompt` rather than `messages`: a provider that applies a model's
    # chat template to messages passes this through untouched (llamacpp).
    prompt: str | None = None
    # Context chunks, for providers that answer from them directly (toy).
    context: list[Any] = field(default_factory=list)
    timeout_s: float = 30.0
    # `/v1/completions`: the one user message is a prompt to continue as is, with no chat or Q/A wrapping.
    raw: bool = False
    # OpenAI request fields beyond the contract (tools, response_format, vendor extensions), as the client sent
    # them. `openai_compat` forwards them unchanged; other providers see only those `openai_fields.py` lets by.
    openai: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderChunk:
    text: str = ""
    finish_reason: StopReason | None = None
    usage: Usage | None = None
    # What an OpenAI-compatible upstream sent beyond text, relayed as is by the OpenAI surface: the rest of the
    # delta (`tool_calls`, `refusal`), the choice's `logprobs`, and its own finish reason ("tool_calls", ...).
    delta: dict[str, Any] | None = None
    logprobs: Any = None
    native_finish: str | None = None


@dataclass(slots=True)
class ProviderResult:
    text: str
    finish_reason: StopReason
    usage: Usage
    # As in ProviderChunk: the rest of the upstream's message, its logprobs and its finish reason.
    message: dict[str, Any] | None = None
    logprobs: Any = None
    native_finish: str | None = None


# Failures that say something about a provider's health, and so count towards its circuit breaker (the model's
# in engine.py, each upstream's in router.py); any other failure is the request's own.
UNHEALTHY = frozenset(
    {
        ReasonCode.PROVIDER_TIMEOUT,
        ReasonCode.PROVIDER_UNAVAILABLE,
        ReasonCode.PROVIDER_ERROR,
        ReasonCode.STREAM_INTERRUPTED,
        ReasonCode.MODEL_CRASHED,
    }
)


@runtime_checkable
class Provider(Protocol):
    name: str
    model: str

    async def start(self) -> None: ...
    async def generate(self, req: ProviderRequest) -> ProviderResult: ...
    def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]: ...
    async def health(self) -> bool: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    name: str
    model: str
    dims: int

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...
    async def aclose(self) -> None: ...


def stream_batches(provider: Provider, req: ProviderRequest) -> AsyncIterator[list[ProviderChunk]]:
    """The provider's stream in batches, none empty: what one upstream read held, where the provider knows
    (`stream_batches()`), else one chunk per batch. The service waits for, and writes, one batch at a time."""
    batched = getattr(provider, "stream_batches", None)
    if batched is not None:
        return batched(req)
    return _one_per_batch(provider.stream(req))


async def _one_per_batch(chunks: AsyncIterator[ProviderChunk]) -> AsyncIterator[list[ProviderChunk]]:
    try:
        async for chunk in chunks:
            yield [chunk]
    finally:
        await aclose_now(chunks)


async def aclose_now(chunks: AsyncIterator[Any] | None) -> None:
    """Close an async generator left early (a timeout, a client gone): the provider's own clean-up (its
    upstream connection) runs now, not whenever it is collected."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def collect(chunks: AsyncIterator[ProviderChunk]) -> ProviderResult:
    """A whole answer from a stream, for providers whose only native mode is streaming (in-process models)."""
    text: list[str] = []
    finish, usage = StopReason.EOS, Usage()
    async for chunk in chunks:
        text.append(chunk.text)
        if chunk.finish_reason is not None:
            finish, usage = chunk.finish_reason, chunk.usage or usage
    return ProviderResult("".join(text), finish, usage)


class ThreadedProvider:
    """`generate()` and `stream()` for in-process models, which produce tokens in a worker thread.

    A subclass sets `spec` and `_executor` (None while unloaded) and implements `_run(req, emit, cancel)`: the
    blocking generation, calling `emit` per chunk and checking `cancel` once per token.
    """

    spec: ModelSpec
    _executor: Executor | None

    def _run(
        self, req: ProviderRequest, emit: Callable[[ProviderChunk], None], cancel: threading.Event
    ) -> None:
        raise NotImplementedError

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        return await collect(self.stream(req))

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        if self._executor is None:
            raise ProviderError(ReasonCode.PROVIDER_UNAVAILABLE, f"Model {self.spec.alias!r} is not loaded.")

        def produce(emit: Callable[[ProviderChunk], None], cancel: threading.Event) -> None:
            self._run(req, emit, cancel)

        async for chunk in stream_in_thread(self._executor, produce):
            yield chunk

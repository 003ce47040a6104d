"""The engine: the generation core behind `/v1/generate` and the OpenAI-compatible API (serving/).

For each request: resolve the model, then walk the chain (the model, then `LLM_FALLBACK_PROVIDERS`): take an
admission slot, pass the circuit breaker, call the provider under timeouts. For a stream, the chain is walked
until a provider has produced its first chunk: that is the last moment at which retrying or falling back can't
duplicate text, because nothing has been sent downstream yet. After it, failures become terminal events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from cairn_core import DEGRADABLE, CairnError, Circuit, GenerateRequest, ReasonCode

from .citations import GroundedAnswer, check_grounded, json_schema
from .errors import ModelNotLoaded, ProviderError
from .grounded_prompt import build_messages
from .model_registry import ModelEntry, ModelRegistry
from .openai_fields import check_honoured
from .providers.base import (
    UNHEALTHY,
    ProviderChunk,
    ProviderRequest,
    ProviderResult,
    aclose_now,
    stream_batches,
)
from .providers.catalogue import provider_class
from .settings import GatewaySettings

log = structlog.get_logger("generation")
R = TypeVar("R")


def _as_cairn_error(exc: BaseException) -> CairnError:
    if isinstance(exc, CairnError):
        return exc
    if isinstance(exc, TimeoutError):
        return ProviderError(ReasonCode.PROVIDER_TIMEOUT, "The model did not answer in time.")
    return ProviderError(ReasonCode.PROVIDER_ERROR, f"The provider failed: {exc!r}")


@asynccontextmanager
async def _judged(breaker: Circuit, *, success_counts: bool = True) -> AsyncIterator[None]:
    """Tell `breaker` how the call in the block went, and raise any failure as a CairnError.

    A failure that says something about the provider's health counts against it; any other end (a bad request,
    a cancelled call, a client that went away) frees the half-open probe, so the next call can probe again.
    `success_counts=False`: the call is not over when the block is (a stream, once open, is judged at its end).
    """
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        await breaker.release_probe()
        raise
    except Exception as exc:
        err = _as_cairn_error(exc)
        if err.reason_code in UNHEALTHY:
            await breaker.failure()
        else:
            await breaker.release_probe()
        raise err from exc
    if success_counts:
        await breaker.success()


class _Served:
    """Who served an answer, as responses, metrics and logs name it."""

    entry: ModelEntry

    @property
    def provider_name(self) -> str:
        return self.entry.spec.provider

    @property
    def model(self) -> str:
        return getattr(self.entry.provider, "model", None) or self.entry.alias


@dataclass
class Completed(_Served):
    entry: ModelEntry
    result: ProviderResult
    grounded: GroundedAnswer | None
    fallback_reason: CairnError | None
    provider_s: float


@dataclass
class StreamHandle(_Served):
    """An opened stream whose first batch of chunks is already in hand. Iterate `batches()` exactly once.

    A batch is what the provider had at once (one upstream read for `openai_compat`, else one chunk): it is
    waited for under one timeout and written to the client in one write, and is never empty.
    """

    entry: ModelEntry
    first: list[ProviderChunk]
    agen: AsyncIterator[list[ProviderChunk]]
    stack: AsyncExitStack
    deadline: float
    idle_timeout_s: float
    ttft_s: float
    fallback_reason: CairnError | None = None
    text: list[str] = field(default_factory=list)

    async def batches(self) -> AsyncIterator[list[ProviderChunk]]:
        try:
            async with _judged(self.entry.breaker):
                batch: list[ProviderChunk] | None = self.first
                while batch is not None:
                    self.text.extend(chunk.text for chunk in batch if chunk.text)
                    yield batch
                    wait = min(self.idle_timeout_s, self.deadline - time.monotonic())
                    try:
                        async with asyncio.timeout(max(wait, 0.001)):
                            batch = await anext(self.agen, None)
                    except TimeoutError:
                        raise ProviderError(
                            ReasonCode.PROVIDER_TIMEOUT, "The model stopped producing tokens in time."
                        ) from None
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        try:
            await aclose_now(self.agen)
        finally:
            await self.stack.aclose()


class Engine:
    def __init__(self, settings: GatewaySettings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry

    # --- request shaping -------------------------------------------------------------------------------

    def provider_request(
        self, req: GenerateRequest, *, raw: bool = False, openai: dict[str, Any] | None = None
    ) -> ProviderRequest:
        """`raw` and `openai` come from the OpenAI surface only (see ProviderRequest)."""
        s = self.settings
        max_tokens = req.max_tokens or min(s.default_max_tokens, s.max_tokens)
        if max_tokens > s.max_tokens:
            raise CairnError(
                ReasonCode.TOKEN_LIMIT,
                f"max_tokens={max_tokens} exceeds this gateway's limit of {s.max_tokens}.",
            )
        schema = json_schema([c.chunk_id for c in req.context_chunks]) if req.citations_required else None
        return ProviderRequest(
            messages=build_messages(req),
            max_tokens=max_tokens,
            temperature=s.temperature if req.temperature is None else req.temperature,
            top_p=req.top_p,
            stop=list(req.stop or []),
            seed=req.seed,
            json_schema=schema,
            prompt=req.prompt if req.messages is None else None,
            context=list(req.context_chunks),
            timeout_s=self.total_timeout_s(req),
            raw=raw,
            openai=dict(openai or {}),
        )

    def total_timeout_s(self, req: GenerateRequest) -> float:
        limit = (
            self.settings.timeout_ms
            if req.timeout_ms is None
            else min(req.timeout_ms, self.settings.timeout_ms)
        )
        return limit / 1000

    async def _first_that_answers(
        self,
        req: GenerateRequest,
        preq: ProviderRequest,
        attempt: Callable[[ModelEntry], Awaitable[R]],
    ) -> tuple[R, CairnError | None]:
        """Try the requested model, then the fallback chain, until one answers; a failure that is not
        degradable (bad input, cancellation) ends the walk at once. Returns the answer and the first failure.

        OpenAI fields the requested model cannot honour are a 400; a fallback that cannot honour them is
        skipped, since its answer would not be to the question asked (and a 400 would hide the real failure).
        """
        failures: list[CairnError] = []
        for i, entry in enumerate(self.registry.chain(self.registry.resolve(req.model))):
            if preq.openai:
                try:
                    check_honoured(
                        provider_class(entry.spec.provider), entry.spec.provider, entry.alias, preq.openai
                    )
                except CairnError:
                    if i == 0:
                        raise
                    log.info("fallback_skipped", model=entry.alias, why="cannot honour the request's fields")
                    continue
            try:
                answer = await attempt(entry)
            except CairnError as exc:
                if exc.reason_code not in DEGRADABLE and not isinstance(exc, ModelNotLoaded):
                    raise
                log.warning(
                    "provider_failed", model=entry.alias, reason_code=exc.reason_code, error=exc.message
                )
                failures.append(exc)
                continue
            return answer, failures[0] if failures else None
        raise failures[0]

    # --- non-streaming ---------------------------------------------------------------------------------

    async def complete(self, req: GenerateRequest, shaped: ProviderRequest | None = None) -> Completed:
        """`shaped`: a provider request built by the caller (the OpenAI surface adds raw prompts and fields)."""
        preq = shaped or self.provider_request(req)
        done, fallback_reason = await self._first_that_answers(
            req, preq, lambda entry: self._complete_one(entry, req, preq)
        )
        done.fallback_reason = fallback_reason
        return done

    async def _complete_one(
        self, entry: ModelEntry, req: GenerateRequest, preq: ProviderRequest
    ) -> Completed:
        if entry.provider is None:
            raise entry.not_loaded()
        provider = entry.provider
        async with entry.admission.slot():
            await entry.breaker.before_call()
            started = time.perf_counter()
            async with _judged(entry.breaker), asyncio.timeout(preq.timeout_s):
                result = await provider.generate(preq)
            provider_s = time.perf_counter() - started
        grounded = check_grounded(result.text, req.context_chunks) if req.citations_required else None
        return Completed(entry, result, grounded, None, provider_s)

    # --- streaming -------------------------------------------------------------------------------------

    async def open_stream(self, req: GenerateRequest, shaped: ProviderRequest | None = None) -> StreamHandle:
        preq = shaped or self.provider_request(req)
        handle, fallback_reason = await self._first_that_answers(
            req, preq, lambda entry: self._open_one(entry, preq)
        )
        handle.fallback_reason = fallback_reason
        return handle

    async def _open_one(self, entry: ModelEntry, preq: ProviderRequest) -> StreamHandle:
        if entry.provider is None:
            raise entry.not_loaded()
        stack = AsyncExitStack()
        await stack.enter_async_context(entry.admission.slot())
        agen: AsyncIterator[list[ProviderChunk]] | None = None
        try:
            await entry.breaker.before_call()
            async with _judged(entry.breaker, success_counts=False):
                started = time.monotonic()
                deadline = started + preq.timeout_s
                agen = stream_batches(entry.provider, preq)
                first_wait = min(self.settings.first_token_timeout_ms / 1000, preq.timeout_s)
                try:
                    async with asyncio.timeout(first_wait):
                        first = await anext(agen)
                except TimeoutError:
                    raise ProviderError(
                        ReasonCode.PROVIDER_TIMEOUT,
                        f"The model sent no first token within {first_wait:.1f} s.",
                    ) from None
                except StopAsyncIteration:
                    raise ProviderError(
                        ReasonCode.STREAM_INTERRUPTED, "The model ended the stream at once."
                    ) from None
        except BaseException:
            await _close_quietly(agen, stack)
            raise
        return StreamHandle(
            entry,
            first,
            agen,
            stack,
            deadline,
            self.settings.idle_timeout_ms / 1000,
            ttft_s=time.monotonic() - started,
        )


async def _close_quietly(agen: AsyncIterator[list[ProviderChunk]] | None, stack: AsyncExitStack) -> None:
    try:
        await aclose_now(agen)
    except Exception:
        pass
    finally:
        await stack.aclose()

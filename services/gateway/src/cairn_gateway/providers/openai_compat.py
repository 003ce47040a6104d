"""Any OpenAI-compatible server: llama.cpp server, Ollama, vLLM, OpenAI.

Calls `{LLM_BASE_URL}/chat/completions` (or `/completions` for a raw prompt) with `stream=false|true` over the
gateway's aiohttp session (this is the hop every token crosses; httpx's layers cost 40 % of the gateway's CPU
here, docs/benchmarks.md). Retries live here and only here (`cairn_core.retrying()`, on tenacity): connect
errors and 429/500/502/503/504, honouring `Retry-After`, and only while opening the request, so never after the
first byte of an answer was produced. A 200 stream can still carry an error frame (`data: {"error": …}`, as vLLM
and llama.cpp server send it), non-JSON lines, or end without `[DONE]`.

OpenAI fields beyond the contract (`ProviderRequest.openai`: tools, response_format, vendor extensions) go out
unchanged, and what the answer carries beyond text (tool calls, logprobs, the upstream's own finish reason)
comes back in the result for the OpenAI surface to relay.

A grounded request asks for its JSON in the strongest form the upstream accepts (`json_schema`, then
`json_object`, then the prompt alone), learnt from the upstream's refusals (`structured_output.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp
import structlog
from cairn_core import ReasonCode, StopReason, Usage, json_dumps, json_loads, outgoing_headers, retrying

from ..errors import ProviderError
from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderRequest, ProviderResult
from .openai_frames import FINISH, StreamedAnswer, beyond_text, frame_error, usage_of
from .structured_output import FormatRefused, Mode, StructuredOutput, public_url, refusal, response_format

log = structlog.get_logger("openai_compat")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 5.0
# How long a finished stream's connection may wait for the server to end the response before it is dropped.
DRAIN_TIMEOUT_S = 2.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff_s(exc: BaseException | None, failed_attempts: int, cap_s: float) -> float:
    """Honour the server's Retry-After; otherwise back off exponentially. Capped by LLM_RETRY_MAX_WAIT_MS."""
    hinted = getattr(exc, "retry_after", None)
    base = hinted if hinted is not None else 0.05 * (2 ** (failed_attempts - 1))
    return float(min(base, cap_s))


def _log_retry(exc: BaseException, failed_attempts: int) -> None:
    log.warning("upstream_retry", attempt=failed_attempts, error=repr(exc))


def _error_from_status(
    status: int, headers: Mapping[str, str], body: str, format_sent: bool = False
) -> ProviderError:
    if format_sent and refusal(status, body):
        return FormatRefused(status, body)
    message = f"Upstream answered HTTP {status}: {body[:300]}"
    if status in RETRY_STATUSES:
        code = (
            ReasonCode.PROVIDER_TIMEOUT
            if status == 504
            else (ReasonCode.PROVIDER_UNAVAILABLE if status in (429, 503) else ReasonCode.PROVIDER_ERROR)
        )
        return ProviderError(code, message, retry_after=_retry_after(headers), retryable=True)
    return ProviderError(ReasonCode.PROVIDER_ERROR, message)


def _open_error(exc: BaseException) -> ProviderError:
    """A failure before any answer arrived: the server could not be reached, or not in time."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return ProviderError(
            ReasonCode.PROVIDER_UNAVAILABLE, f"Cannot reach the model server: {exc!r}", unreachable=True
        )
    if isinstance(exc, TimeoutError):
        return ProviderError(ReasonCode.PROVIDER_TIMEOUT, "The model server did not answer in time.")
    if isinstance(exc, aiohttp.ClientConnectionError):
        # The connection dropped before any answer: typically a pooled keep-alive connection the server closed
        # just as the request went out ("server disconnected", "cannot write request body"). Try again.
        return ProviderError(
            ReasonCode.PROVIDER_UNAVAILABLE,
            f"The connection to the model server dropped: {exc!r}",
            retryable=True,
        )
    return ProviderError(ReasonCode.PROVIDER_UNAVAILABLE, f"The request to the model server failed: {exc!r}")


def _read_error(exc: BaseException) -> ProviderError:
    """A failure while the answer was arriving."""
    if isinstance(exc, TimeoutError):
        return ProviderError(ReasonCode.PROVIDER_TIMEOUT, "The model server stopped sending in time.")
    return ProviderError(ReasonCode.STREAM_INTERRUPTED, f"The connection to the model server broke: {exc!r}")


async def _drain_then_release(resp: aiohttp.ClientResponse) -> None:
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            while await resp.content.readany():
                pass  # anything after [DONE] is not part of the answer
    except (TimeoutError, aiohttp.ClientError):
        resp.close()
        return
    except asyncio.CancelledError:
        resp.close()
        raise
    resp.release()


class OpenAICompatProvider:
    name = "openai_compat"
    passthrough = True  # a remote server decides for itself what it honours (openai_fields.py)

    def __init__(self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession) -> None:
        self.model = spec.model or settings.model or "default"
        self.base_url = str(spec.params.get("base_url", settings.base_url)).rstrip("/")
        key = spec.params.get("api_key") or (
            settings.api_key.get_secret_value() if settings.api_key else None
        )
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.post_headers = {**self.headers, "Content-Type": "application/json"}
        self.completions_url = f"{self.base_url}/chat/completions"
        self.text_completions_url = f"{self.base_url}/completions"
        self.http = http
        # The router sets 0: it retries on another server itself, and two layers would multiply the attempts.
        self.retries = int(spec.params.get("retries", settings.retries))
        self.retry_cap_s = settings.retry_max_wait_ms / 1000
        self.idle_timeout_s = settings.idle_timeout_ms / 1000
        self._drains: set[asyncio.Task[None]] = set()
        self.structured = StructuredOutput(self.base_url, self.model)

    async def start(self) -> None:
        return None

    def payload(self, req: ProviderRequest, stream: bool, mode: Mode | None = None) -> dict[str, Any]:
        """The upstream's request body; a grounded one asks for its JSON in `mode` (default: the learnt one)."""
        body: dict[str, Any] = {"model": self.model}
        if req.raw:
            body["prompt"] = req.messages[0].content
        else:
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
        body |= {
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": stream,
        }
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop"] = req.stop
        if req.seed is not None:
            body["seed"] = req.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        if req.json_schema is not None:
            fmt = response_format(mode or self.structured.mode, req.json_schema)
            if fmt is not None:
                body["response_format"] = fmt
        # Last, so that what the client asked for is what the upstream sees (a tool conversation's own
        # messages included: the OpenAI surface puts them here when they carry more than text).
        body.update(req.openai)
        return body

    async def _open(self, req: ProviderRequest, stream: bool) -> aiohttp.ClientResponse:
        """Open the upstream request. A refusal of the grounded `response_format` is no failure: the request goes
        out again at once in the next mode, learnt for the requests after it (a client's own format is theirs)."""
        ours = req.json_schema is not None and "response_format" not in req.openai
        while True:
            mode = self.structured.mode
            payload = self.payload(req, stream, mode)
            try:
                return await self._open_as(req, stream, payload)
            except FormatRefused as exc:
                if not ours:
                    raise
                self.structured.refused(mode, exc)

    async def _open_as(
        self, req: ProviderRequest, stream: bool, payload: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        body = json_dumps(payload)
        format_sent = "response_format" in payload
        url = self.text_completions_url if req.raw else self.completions_url
        headers = {**self.post_headers, **outgoing_headers()}
        connect_s = min(CONNECT_TIMEOUT_S, req.timeout_s)
        # A stream may last as long as the engine's deadline allows, but must keep sending: the idle limit
        # is the read timeout. A plain answer is bounded by the engine's own deadline around this call.
        limits = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_s, sock_read=self.idle_timeout_s if stream else None
        )
        return await retrying(
            lambda _: self._post(url, body, headers, limits, format_sent),
            attempts=1 + self.retries,
            wait=lambda exc, failed: backoff_s(exc, failed, self.retry_cap_s),
            on_retry=_log_retry,
        )

    async def _post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        limits: aiohttp.ClientTimeout,
        format_sent: bool,
    ) -> aiohttp.ClientResponse:
        try:
            resp = await self.http.post(url, data=body, headers=headers, timeout=limits)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _open_error(exc) from exc
        if resp.status != 200:
            try:
                text = await resp.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError):
                text = ""
            finally:
                resp.release()
            raise _error_from_status(resp.status, resp.headers, text, format_sent)
        return resp

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        resp = await self._open(req, stream=False)
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _read_error(exc) from exc
        finally:
            resp.release()
        try:
            data = json_loads(raw)
            if "error" in data:
                raise frame_error(data)
            choice = data["choices"][0]
            message = {} if req.raw else choice["message"]
            text = (choice.get("text") if req.raw else message.get("content")) or ""
            rest = beyond_text(message)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(
                ReasonCode.MALFORMED_OUTPUT, f"Unreadable answer from the model server: {exc!r}"
            ) from None
        native = choice.get("finish_reason")
        finish = FINISH.get(native or "stop", StopReason.EOS)
        return ProviderResult(
            text,
            finish,
            usage_of(data.get("usage")) or Usage(),
            message=rest,
            logprobs=choice.get("logprobs"),
            native_finish=native if isinstance(native, str) else None,
        )

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        """One chunk at a time, for callers that take them so (the router, `collect`)."""
        batches = self.stream_batches(req)
        try:
            async for batch in batches:
                for chunk in batch:
                    yield chunk
        finally:
            await batches.aclose()

    async def stream_batches(self, req: ProviderRequest) -> AsyncGenerator[list[ProviderChunk], None]:
        """The answer as it arrives, one batch per upstream read that completed a chunk (the first chunk alone).

        A server that sends as fast as it can puts many frames in one read; handing them on together lets the
        gateway pass them through its layers, and write them to the client, once per read rather than once per
        frame (docs/benchmarks.md, "The stream path"). A model-paced server sends one frame per read: batches
        of one.
        """
        resp = await self._open(req, stream=True)
        answer = StreamedAnswer(req.raw)
        last: list[ProviderChunk] = []  # what the read that ended the answer held before its end
        try:
            if resp.content_type != "text/event-stream":  # e.g. a JSON error body with status 200
                body = (await resp.text(errors="replace"))[:300]
                raise ProviderError(
                    ReasonCode.PROVIDER_ERROR,
                    f"The model server did not answer with a stream ({resp.content_type}): {body}",
                )
            first = True
            async for data in resp.content.iter_any():
                answer.feed(data)
                if first and (batch := answer.take(limit=1)):
                    # The first token goes out alone, before the rest of its read is parsed: it is what a user
                    # waits for, and a burst would hold it back by the time the burst takes to handle.
                    first = False
                    yield batch
                batch = answer.take()
                if answer.ended:
                    last = batch
                    break
                if batch:
                    yield batch
            if answer.error is not None:
                if last:  # the chunks before the error frame go out first, as they came
                    yield last
                raise answer.error
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _read_error(exc) from exc
        finally:
            # Closing (not releasing) an unfinished stream drops the connection, so the server sees the cancel.
            if answer.done or answer.finish is not None:
                self._release_when_ended(resp)
            else:
                resp.close()
        if not answer.done and answer.finish is None:
            raise ProviderError(
                ReasonCode.STREAM_INTERRUPTED, "The model server closed the stream mid-answer."
            )
        end = ProviderChunk(
            finish_reason=answer.finish or StopReason.EOS, usage=answer.usage, native_finish=answer.native
        )
        yield [*last, end]

    def _release_when_ended(self, resp: aiohttp.ClientResponse) -> None:
        """Give a finished stream's connection back to the pool once the server has ended the response.

        `[DONE]` often arrives a moment before the end of the chunked body; releasing before that end closes
        the connection, and the next request pays for a new one (a TLS handshake, for a remote server). The
        wait happens off the answer's path: the client already has its last frame.
        """
        if resp.content.is_eof():
            resp.release()
            return
        task = asyncio.get_running_loop().create_task(_drain_then_release(resp))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def health(self) -> bool:
        try:
            async with self.http.get(
                f"{self.base_url}/models", headers=self.headers, timeout=aiohttp.ClientTimeout(total=2.0)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def aclose(self) -> None:
        for task in list(self._drains):
            task.cancel()

    def info(self) -> dict[str, Any]:
        return {
            "state": "remote",
            "memory_mb": 0,
            "base_url": public_url(self.base_url),
            "structured_output": self.structured.mode.value,
        }

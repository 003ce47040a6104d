"""The client to the LLM gateway: `/v1/embed` and `/v1/generate` (JSON and SSE).

Pooled (one httpx client from the lifespan), with timeouts, a small circuit breaker, and retries only
before the first byte: a request is retried on connect errors and 502/503/504 answers, never once a stream has
started (that is how duplicated text happens). Every call sends `X-Request-ID` and `traceparent`. Failures
become `UpstreamError` with the reason code the gateway gave, or PROVIDER_UNAVAILABLE / PROVIDER_TIMEOUT /
CIRCUIT_OPEN, so the chat service can degrade on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from cairn_core import (
    CircuitBreaker,
    GenerateRequest,
    GenerateResponse,
    ReasonCode,
    UpstreamError,
    client_span,
    json_dumps,
    outgoing_headers,
)
from opentelemetry.trace import Tracer
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from .settings import QuerySettings

T = TypeVar("T")
_RETRY_STATUS = {502, 503, 504}


class _Retryable(Exception):
    def __init__(self, error: UpstreamError) -> None:
        self.error = error


def _error_from_response(resp: httpx.Response, body: bytes) -> UpstreamError:
    code, message = ReasonCode.PROVIDER_ERROR, f"The gateway answered HTTP {resp.status_code}."
    try:
        data = httpx.Response(200, content=body).json()
        code = ReasonCode(data.get("reason_code"))
        message = str(data.get("message") or message)
    except (ValueError, TypeError, AttributeError):
        pass
    retry_after = resp.headers.get("retry-after")
    return UpstreamError(
        code,
        message,
        status_code=resp.status_code,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


class GatewayClient:
    def __init__(self, settings: QuerySettings, http: httpx.AsyncClient, tracer: Tracer) -> None:
        self.settings = settings
        self.http = http
        self.tracer = tracer
        self.circuit = CircuitBreaker(
            "The gateway", settings.circuit_failures, settings.circuit_reset_ms / 1000
        )
        self.base = settings.gateway_url.rstrip("/")

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` (which raises _Retryable for a retryable failure) with the circuit around it."""
        self.circuit.before_call()
        try:
            async for tries in AsyncRetrying(
                stop=stop_after_attempt(self.settings.retries + 1),
                wait=wait_exponential(multiplier=self.settings.retry_wait_ms / 1000, max=2.0),
                retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                reraise=True,
            ):
                with tries:
                    result = await attempt()
        except _Retryable as exc:
            self.circuit.failure()
            raise exc.error from None
        except UpstreamError as exc:
            if exc.reason_code in (ReasonCode.PROVIDER_TIMEOUT, ReasonCode.PROVIDER_UNAVAILABLE):
                self.circuit.failure()
            else:
                self.circuit.release_probe()
            raise
        except BaseException:  # cancelled (client gone, or the caller's deadline): neither verdict
            self.circuit.release_probe()
            raise
        self.circuit.success()
        return result

    async def _send(self, path: str, body: dict[str, Any], timeout_s: float, stream: bool) -> httpx.Response:
        request = self.http.build_request(
            "POST",
            f"{self.base}{path}",
            content=json_dumps(body),
            headers=outgoing_headers({"Content-Type": "application/json"}),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        )
        try:
            resp = await self.http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # httpx-aiohttp reports a refused connection as ConnectTimeout: both mean "not reachable".
            raise _Retryable(
                UpstreamError(ReasonCode.PROVIDER_UNAVAILABLE, "The gateway is unreachable.")
            ) from None
        except httpx.TimeoutException:
            raise UpstreamError(ReasonCode.PROVIDER_TIMEOUT, "The gateway did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise _Retryable(
                UpstreamError(
                    ReasonCode.PROVIDER_UNAVAILABLE, f"The gateway is unreachable ({type(exc).__name__})."
                )
            ) from None
        if resp.status_code >= 400:
            raw = await resp.aread()
            await resp.aclose()
            error = _error_from_response(resp, raw)
            if resp.status_code in _RETRY_STATUS and error.reason_code is not ReasonCode.CIRCUIT_OPEN:
                raise _Retryable(error)
            raise error
        return resp

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], str]:
        """Vectors for `texts` (in batches of 64, under the gateway's cap) and the embedding model's name."""
        timeout_s = self.settings.embed_timeout_ms / 1000
        out: list[list[float]] = []
        model = "unknown"
        with client_span(self.tracer, "gateway.embed", inputs=len(texts)):
            for i in range(0, len(texts), 64):

                async def attempt(batch: list[str] = texts[i : i + 64]) -> tuple[list[list[float]], str]:
                    resp = await self._send("/v1/embed", {"input": batch}, timeout_s, stream=False)
                    data = resp.json()
                    return data["embeddings"], str(data.get("model") or "unknown")

                vectors, model = await self._with_retries(attempt)
                out += vectors
        return out, model

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        timeout_s = self.settings.gateway_timeout_ms / 1000
        body = req.model_dump(mode="json", exclude_none=True)

        async def attempt() -> GenerateResponse:
            resp = await self._send("/v1/generate", body, timeout_s, stream=False)
            return GenerateResponse.model_validate(resp.json())

        with client_span(self.tracer, "gateway.generate"):
            try:
                async with asyncio.timeout(timeout_s):
                    return await self._with_retries(attempt)
            except TimeoutError:
                self.circuit.failure()
                raise UpstreamError(
                    ReasonCode.PROVIDER_TIMEOUT, "The gateway did not answer in time."
                ) from None

    async def open_stream(self, req: GenerateRequest) -> httpx.Response:
        """POST a streaming /v1/generate and return once the response headers are in (the first byte).

        The gateway sends its headers when the model produced its first token, so the first-token timeout
        covers the wait. After this returns nothing is retried.
        """
        first_s = self.settings.first_token_timeout_ms / 1000
        idle_s = self.settings.gateway_timeout_ms / 1000
        body = req.model_dump(mode="json", exclude_none=True)

        async def attempt() -> httpx.Response:
            return await self._send("/v1/generate", body, idle_s, stream=True)

        try:
            async with asyncio.timeout(first_s):
                return await self._with_retries(attempt)
        except TimeoutError:
            self.circuit.failure()
            raise UpstreamError(
                ReasonCode.PROVIDER_TIMEOUT, "The model did not start answering in time."
            ) from None

"""The client to the LLM gateway: `/v1/embed` and `/v1/generate` (JSON and SSE).

Pooled (one httpx client from the lifespan), with timeouts, a small circuit breaker per gateway replica
(`QS_GATEWAY_URLS`), and retries only before the first byte: a request is retried on connect errors and
502/503/504 answers, on another replica when there is one, never once a stream has started (that is how
duplicated text happens). Every call sends `X-Request-ID` and `traceparent`. Failures
become `UpstreamError` with the reason code the gateway gave, or PROVIDER_UNAVAILABLE / PROVIDER_TIMEOUT /
CIRCUIT_OPEN, so the chat service can degrade on them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
from cairn_core import (
    CircuitBreaker,
    GenerateRequest,
    GenerateResponse,
    GiveUp,
    ReasonCode,
    Replicas,
    UpstreamError,
    client_span,
    json_dumps,
    json_loads,
    outgoing_headers,
    retrying,
)
from opentelemetry.trace import Tracer

from cairn_query.settings import QuerySettings

T = TypeVar("T")
_RETRY_STATUS = {502, 503, 504}


def _error_from_response(resp: httpx.Response, body: bytes) -> UpstreamError:
    """The gateway's own reason code; a 502/503/504 is `retryable`, except an open circuit (it says how long)."""
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
        retryable=resp.status_code in _RETRY_STATUS and code is not ReasonCode.CIRCUIT_OPEN,
    )


@dataclass(eq=False)
class _Replica:
    base: str
    circuit: CircuitBreaker


class GatewayClient:
    def __init__(self, settings: QuerySettings, http: httpx.AsyncClient, tracer: Tracer) -> None:
        self.settings = settings
        self.http = http
        self.tracer = tracer
        urls = settings.gateway_url_list
        self.replicas = Replicas(
            [
                _Replica(
                    url,
                    CircuitBreaker(
                        "The gateway" if len(urls) == 1 else f"The gateway at {url}",
                        settings.circuit_failures,
                        settings.circuit_reset_ms / 1000,
                    ),
                )
                for url in urls
            ]
        )

    @property
    def circuit_open(self) -> bool:
        """No gateway replica takes calls now (each one's breaker is open)."""
        return all(r.circuit.is_open for r in self.replicas.items)

    def _next(self, tried: set[_Replica]) -> _Replica | None:
        """The next replica in turn whose breaker lets a call through, one not yet tried by this call first."""
        usable = [r for r in self.replicas.order() if not r.circuit.is_open]
        fresh = [r for r in usable if r not in tried]
        candidates = fresh or usable
        return candidates[0] if candidates else None

    async def _with_retries(
        self, attempt: Callable[[str], Awaitable[T]], timeout_s: float | None = None, late: str = ""
    ) -> T:
        """Run `attempt(base_url)` against the replicas (`retrying()`); an UpstreamError that is `retryable` is
        tried again.

        A retry goes to another replica while there is one this call has not tried; back on one already tried,
        it waits first (exponential, as before). Each replica's breaker hears of a call's failure once, so one
        replica behaves as the single gateway always did. `timeout_s` bounds the whole call (`late` says so).
        """
        tried: set[_Replica] = set()
        failed: set[_Replica] = set()
        failures: list[UpstreamError] = []

        async def one(n: int) -> T:
            replica = self._next(tried)
            if replica is None:
                raise GiveUp(failures[-1] if failures else await self._all_open())
            if replica in tried:
                await asyncio.sleep(min(self.settings.retry_wait_ms / 1000 * 2 ** (n - 2), 2.0))
            try:
                await replica.circuit.before_call()  # half open: one probe at a time
            except UpstreamError as exc:
                raise GiveUp(failures[-1] if failures else exc) from None
            tried.add(replica)
            current.append(replica)
            try:
                result = await attempt(replica.base)
            except UpstreamError as exc:
                await self._failed(replica, exc, first_time=replica not in failed)
                if exc.retryable:
                    failed.add(replica)
                    failures.append(exc)
                raise
            except BaseException:  # cancelled (client gone, or the deadline): neither verdict
                await replica.circuit.release_probe()
                raise
            self.replicas.reachable(replica)
            await replica.circuit.success()
            return result

        current: list[_Replica] = []
        try:
            async with asyncio.timeout(timeout_s):
                return await retrying(one, attempts=self.settings.retries + 1)
        except TimeoutError:
            if current:
                await current[-1].circuit.failure()
            raise UpstreamError(ReasonCode.PROVIDER_TIMEOUT, late) from None

    async def _failed(self, replica: _Replica, exc: UpstreamError, first_time: bool) -> None:
        """What a failed attempt tells the replica's breaker: a retryable failure counts once per call."""
        if not exc.retryable:
            if exc.reason_code in (ReasonCode.PROVIDER_TIMEOUT, ReasonCode.PROVIDER_UNAVAILABLE):
                await replica.circuit.failure()
            else:
                await replica.circuit.release_probe()
            return
        if exc.unreachable:
            self.replicas.unreachable(replica)
        if first_time:
            await replica.circuit.failure()
        else:
            await replica.circuit.release_probe()

    async def _all_open(self) -> UpstreamError:
        """Every replica's breaker is open (nothing awaited since _next said so): its refusal says for how long."""
        try:
            await self.replicas.items[0].circuit.before_call()
        except UpstreamError as exc:
            return exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, base: str, path: str, body: dict[str, Any], timeout_s: float, stream: bool
    ) -> httpx.Response:
        request = self.http.build_request(
            "POST",
            f"{base}{path}",
            content=json_dumps(body),
            headers=outgoing_headers({"Content-Type": "application/json"}),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        )
        try:
            resp = await self.http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # httpx-aiohttp reports a refused connection as ConnectTimeout: both mean "not reachable".
            raise UpstreamError(
                ReasonCode.PROVIDER_UNAVAILABLE, "The gateway is unreachable.", unreachable=True
            ) from None
        except httpx.TimeoutException:
            raise UpstreamError(ReasonCode.PROVIDER_TIMEOUT, "The gateway did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(
                ReasonCode.PROVIDER_UNAVAILABLE,
                f"The gateway is unreachable ({type(exc).__name__}).",
                retryable=True,
            ) from None
        if resp.status_code >= 400:
            raw = await resp.aread()
            await resp.aclose()
            raise _error_from_response(resp, raw)
        return resp

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], str]:
        """Vectors for `texts`, in their order, and the embedding model's name.

        In as few calls as `QS_EMBED_BATCH_INPUTS` allows, shortest texts first, so that each call (and the
        gateway's batches inside it) holds texts of about one length: a document's chunks are ~200 tokens and
        its sentences ~30, and a batch is as slow as its longest text. A text's vector does not depend on the
        call it goes in."""
        size = self.settings.embed_batch_inputs
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        model = "unknown"
        with client_span(self.tracer, "gateway.embed", inputs=len(texts)):
            for start in range(0, len(order), size):
                part = order[start : start + size]
                batch = [texts[i] for i in part]
                timeout_s = self.settings.embed_timeout_ms / 1000 * math.ceil(len(batch) / 64)
                vectors, model = await self._with_retries(
                    partial(self._embed_call, batch=batch, timeout_s=timeout_s)
                )
                for i, vector in zip(part, vectors, strict=True):
                    out[i] = vector
        return out, model

    async def _embed_call(
        self, base: str, batch: list[str], timeout_s: float
    ) -> tuple[list[list[float]], str]:
        resp = await self._send(base, "/v1/embed", {"input": batch}, timeout_s, stream=False)
        data = json_loads(resp.content)  # 256 × 384 floats: orjson parses them in a third of json's time
        return data["embeddings"], str(data.get("model") or "unknown")

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        timeout_s = self.settings.gateway_timeout_ms / 1000
        body = req.model_dump(mode="json", exclude_none=True)

        async def attempt(base: str) -> GenerateResponse:
            resp = await self._send(base, "/v1/generate", body, timeout_s, stream=False)
            return GenerateResponse.model_validate(resp.json())

        with client_span(self.tracer, "gateway.generate"):
            return await self._with_retries(attempt, timeout_s, "The gateway did not answer in time.")

    async def open_stream(self, req: GenerateRequest) -> httpx.Response:
        """POST a streaming /v1/generate and return once the response headers are in (the first byte).

        The gateway sends its headers when the model produced its first token, so the first-token timeout
        covers the wait. After this returns nothing is retried.
        """
        first_s = self.settings.first_token_timeout_ms / 1000
        idle_s = self.settings.gateway_timeout_ms / 1000
        body = req.model_dump(mode="json", exclude_none=True)

        async def attempt(base: str) -> httpx.Response:
            return await self._send(base, "/v1/generate", body, idle_s, stream=True)

        return await self._with_retries(attempt, first_s, "The model did not start answering in time.")

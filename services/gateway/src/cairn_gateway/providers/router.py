"""Several OpenAI-compatible servers behind one model alias (`LLM_UPSTREAMS`), as one provider.

Each request goes to the healthy deployment with the fewest requests in flight, scaled by its weight
(`(in_flight + 1) / weight`; ties go to the heavier one, then round-robin so that a quiet gateway still spreads
its requests). Each deployment has its own circuit breaker: one whose breaker is open is not picked until the
breaker half-opens, and then only for one probe.

Retries live here, and only here: the wrapped OpenAICompatProvider instances are built with `retries=0`, so a
failed call is not retried on the same server while the router also retries it elsewhere (attempts would
multiply). A retry goes to a deployment this request has not tried yet; only when every one was tried does it
go back to one, after the usual backoff (Retry-After honoured). All of it happens before the first chunk: a
stream that has yielded anything is never retried, so no token is ever sent twice.

The service around this provider still owns admission, deadlines and the alias's own breaker, which only
hears of a failure when every deployment failed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import structlog
from cairn_core import (
    CairnError,
    Circuit,
    CircuitBreaker,
    GiveUp,
    ReasonCode,
    Redis,
    RedisCircuit,
    UpstreamError,
    is_retryable,
    retrying,
)

from ..errors import ProviderError
from ..settings import GatewaySettings, ModelSpec
from .base import UNHEALTHY, ProviderChunk, ProviderRequest, ProviderResult, aclose_now
from .openai_compat import OpenAICompatProvider, backoff_s
from .structured_output import public_url

log = structlog.get_logger("router")
T = TypeVar("T")

# Failures before the first chunk that another server may well not have: unreachable, overloaded, 5xx
# (`retryable`), no answer in time, or a connection that broke before any text. A 4xx is the request's
# own fault and would fail everywhere.
_FAIL_OVER = frozenset({ReasonCode.PROVIDER_TIMEOUT, ReasonCode.STREAM_INTERRUPTED})


def _fails_over(exc: BaseException) -> bool:
    return isinstance(exc, CairnError) and (is_retryable(exc) or exc.reason_code in _FAIL_OVER)


@dataclass(eq=False)
class Deployment:
    provider: OpenAICompatProvider
    weight: float
    breaker: Circuit
    url: str
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    last_error: str | None = None

    @property
    def load(self) -> float:
        return (self.in_flight + 1) / self.weight

    async def failed(self, err: CairnError, *, unhealthy: bool = True) -> None:
        self.failures += 1
        self.last_error = f"{err.reason_code.value}: {err.message[:200]}"
        if unhealthy and err.reason_code in UNHEALTHY:
            await self.breaker.failure()
        else:
            await self.breaker.release_probe()
        log.warning("deployment_failed", base_url=self.url, reason_code=err.reason_code, error=err.message)

    def info(self) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "model": self.provider.model,
            "weight": self.weight,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "failures": self.failures,
            "circuit": self.breaker.state.name.lower(),
            "last_error": self.last_error,
            "structured_output": self.provider.structured.mode.value,
        }


class RouterProvider:
    name = "router"
    passthrough = True  # every deployment is an OpenAI-compatible server (openai_fields.py)

    def __init__(self, spec: ModelSpec, settings: GatewaySettings, http: aiohttp.ClientSession) -> None:
        self.alias = spec.alias
        self.model = spec.model or spec.alias
        self.attempts = 1 + settings.retries
        self.retry_cap_s = settings.retry_max_wait_ms / 1000
        self.deployments: list[Deployment] = []
        for i, dep in enumerate(spec.params.get("deployments") or []):
            child = ModelSpec(
                alias=f"{spec.alias}#{i}",
                provider="openai_compat",
                model=dep.get("model") or spec.model,
                params={"base_url": dep["base_url"], "api_key": dep.get("api_key"), "retries": 0},
            )
            url = public_url(str(dep["base_url"]))
            self.deployments.append(
                Deployment(
                    provider=OpenAICompatProvider(child, settings, http),
                    weight=float(dep.get("weight") or 1.0),
                    breaker=CircuitBreaker(
                        f"Upstream {url}", settings.circuit_failures, settings.circuit_reset_ms / 1000
                    ),
                    url=url,
                )
            )
        if not self.deployments:
            raise ProviderError(ReasonCode.PROVIDER_UNAVAILABLE, f"Model {spec.alias!r} has no upstreams.")
        self._turn = itertools.count()

    async def start(self) -> None:
        return None

    def share_circuits(self, redis: Redis, probe_lease_s: float) -> None:
        """With CAIRN_REDIS_URL, each upstream's breaker lives in Redis under its URL: when one gateway replica
        sees a server fail, every replica stops sending to it (the registry calls this after loading)."""
        for dep in self.deployments:
            if isinstance(dep.breaker, CircuitBreaker):
                dep.breaker = RedisCircuit(redis, dep.breaker, probe_lease_s=probe_lease_s)

    # --- routing ---------------------------------------------------------------------------------------

    def pick(
        self, tried: set[Deployment], refused: frozenset[Deployment] | set[Deployment] = frozenset()
    ) -> Deployment | None:
        """The least loaded healthy deployment, preferring those this request has not tried yet."""
        healthy = [d for d in self.deployments if not d.breaker.is_open and d not in refused]
        fresh = [d for d in healthy if d not in tried] or healthy
        if not fresh:
            return None
        # Rotate the starting point so that equal candidates (an idle gateway) take turns.
        start = next(self._turn) % len(fresh)
        rotated = fresh[start:] + fresh[:start]
        return min(rotated, key=lambda d: (d.load, -d.weight))

    def _all_open(self) -> UpstreamError:
        return UpstreamError(
            ReasonCode.CIRCUIT_OPEN,
            f"Every upstream of model {self.alias!r} failed repeatedly; calls to them are paused for a moment.",
            retry_after=1.0,
        )

    async def _acquire(self, tried: set[Deployment], last: CairnError | None, attempt: int) -> Deployment:
        refused: set[Deployment] = set()  # open by another replica's account (shared circuits): not tried
        while True:
            dep = self.pick(tried, refused)
            if dep is None:
                raise GiveUp(last or self._all_open())
            if dep in tried:  # the same server again: give it a moment, as its Retry-After may ask
                await asyncio.sleep(backoff_s(last, attempt, self.retry_cap_s))
            try:
                await dep.breaker.before_call()  # a half-open breaker lets one probe through
            except UpstreamError:
                refused.add(dep)
                continue
            break
        tried.add(dep)
        dep.in_flight += 1
        dep.requests += 1
        return dep

    async def _failover(self, call: Callable[[Deployment], Awaitable[T]]) -> T:
        """`call` on the deployments in turn (`_acquire`), `retrying()` while a failure may not happen elsewhere;
        `call` gives each deployment its verdict and frees its slot."""
        tried: set[Deployment] = set()
        failures: list[CairnError] = []

        async def attempt(n: int) -> T:
            dep = await self._acquire(tried, failures[-1] if failures else None, n)
            try:
                return await call(dep)
            except CairnError as exc:
                failures.append(exc)
                raise

        return await retrying(attempt, attempts=self.attempts, retry_if=_fails_over)

    # --- calls -----------------------------------------------------------------------------------------

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        async def call(dep: Deployment) -> ProviderResult:
            try:
                result = await dep.provider.generate(req)
            except CairnError as exc:
                await dep.failed(exc, unhealthy=_fails_over(exc))
                raise
            except BaseException:
                await dep.breaker.release_probe()
                raise
            finally:
                dep.in_flight -= 1
            await dep.breaker.success()
            return result

        return await self._failover(call)

    async def _open(
        self, req: ProviderRequest
    ) -> tuple[Deployment, AsyncIterator[ProviderChunk], ProviderChunk]:
        """A deployment's stream with its first chunk in hand: up to here, a failure may go elsewhere."""

        async def call(dep: Deployment) -> tuple[Deployment, AsyncIterator[ProviderChunk], ProviderChunk]:
            agen = dep.provider.stream(req)
            try:
                first = await anext(agen)
            except StopAsyncIteration:
                exc: CairnError = ProviderError(ReasonCode.STREAM_INTERRUPTED, "The upstream ended at once.")
            except CairnError as err:
                exc = err
            except BaseException:
                dep.in_flight -= 1
                await dep.breaker.release_probe()
                await aclose_now(agen)
                raise
            else:
                return dep, agen, first
            dep.in_flight -= 1
            await dep.failed(exc, unhealthy=_fails_over(exc))
            raise exc

        return await self._failover(call)

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        dep, agen, first = await self._open(req)
        verdict = False
        try:
            yield first
            # From here on nothing is retried: the first chunk may already be downstream.
            async for chunk in agen:
                yield chunk
            await dep.breaker.success()
            verdict = True
        except CairnError as exc:
            await dep.failed(exc)
            verdict = True
            raise
        finally:
            dep.in_flight -= 1
            if not verdict:  # the caller went away or timed out: no verdict on the server
                await dep.breaker.release_probe()
            await aclose_now(agen)

    async def health(self) -> bool:
        results = await asyncio.gather(*(d.provider.health() for d in self.deployments))
        return any(results)

    async def aclose(self) -> None:
        for dep in self.deployments:
            await dep.provider.aclose()

    def info(self) -> dict[str, Any]:
        return {
            "state": "remote",
            "memory_mb": 0,
            "routing": "least_in_flight",
            "deployments": [d.info() for d in self.deployments],
        }

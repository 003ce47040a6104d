"""Any OpenAI-compatible server: llama.cpp server, Ollama, vLLM, OpenAI.

Calls `{LLM_BASE_URL}/chat/completions` with `stream=false|true`. Retries live here and only here (tenacity):
connect errors and 429/500/502/503/504, honouring `Retry-After`, and only while opening the request, so never
after the first byte of an answer was produced. A 200 stream can still carry an error frame
(`data: {"error": …}`, as vLLM and llama.cpp server send it), non-JSON lines, or end without `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from cairn_core import ReasonCode, StopReason, Usage, aiter_sse, json_dumps, json_loads, outgoing_headers
from httpx_sse import SSEError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from ..settings import GatewaySettings, ModelSpec
from .base import ProviderChunk, ProviderError, ProviderRequest, ProviderResult

log = structlog.get_logger("openai_compat")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_FINISH = {"stop": StopReason.EOS, "length": StopReason.LENGTH, "eos": StopReason.EOS}


class RetryableUpstream(ProviderError):
    pass


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _WaitRetryAfter(wait_base):
    """Honour the server's Retry-After; otherwise back off exponentially. Capped by LLM_RETRY_MAX_WAIT_MS."""

    def __init__(self, cap_s: float) -> None:
        self.cap_s = cap_s

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = getattr(exc, "retry_after", None)
        base = hinted if hinted is not None else 0.05 * (2 ** (retry_state.attempt_number - 1))
        return float(min(base, self.cap_s))


def _error_from_status(resp: httpx.Response, body: str) -> ProviderError:
    message = f"Upstream answered HTTP {resp.status_code}: {body[:300]}"
    if resp.status_code in RETRY_STATUSES:
        code = (
            ReasonCode.PROVIDER_TIMEOUT
            if resp.status_code == 504
            else (
                ReasonCode.PROVIDER_UNAVAILABLE
                if resp.status_code in (429, 503)
                else ReasonCode.PROVIDER_ERROR
            )
        )
        return RetryableUpstream(code, message, retry_after=_retry_after(resp))
    return ProviderError(ReasonCode.PROVIDER_ERROR, message)


def _map_transport_error(exc: httpx.HTTPError) -> ProviderError:
    if isinstance(exc, SSEError):  # a 200 that is not an event stream, e.g. a JSON error body
        return ProviderError(
            ReasonCode.PROVIDER_ERROR, f"The model server did not answer with a stream: {exc}"
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return RetryableUpstream(ReasonCode.PROVIDER_UNAVAILABLE, f"Cannot reach the model server: {exc!r}")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(ReasonCode.PROVIDER_TIMEOUT, "The model server did not answer in time.")
    return ProviderError(ReasonCode.STREAM_INTERRUPTED, f"The connection to the model server broke: {exc!r}")


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        total_tokens=int(data.get("total_tokens") or 0),
    )


def _frame_error(data: dict[str, Any]) -> ProviderError:
    err = data.get("error")
    message = err.get("message") if isinstance(err, dict) else str(err)
    return ProviderError(
        ReasonCode.PROVIDER_ERROR, f"The model server reported an error mid-stream: {message}"
    )


class OpenAICompatProvider:
    name = "openai_compat"

    def __init__(self, spec: ModelSpec, settings: GatewaySettings, http: httpx.AsyncClient) -> None:
        self.model = spec.model or settings.model or "default"
        self.base_url = str(spec.params.get("base_url", settings.base_url)).rstrip("/")
        key = spec.params.get("api_key") or (
            settings.api_key.get_secret_value() if settings.api_key else None
        )
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.post_headers = {**self.headers, "Content-Type": "application/json"}
        # Parsed once: httpx would otherwise re-parse the URL string on every request.
        self.completions_url = httpx.URL(f"{self.base_url}/chat/completions")
        self.http = http
        self.retries = settings.retries
        self.retry_cap_s = settings.retry_max_wait_ms / 1000
        self.idle_timeout_s = settings.idle_timeout_ms / 1000

    async def start(self) -> None:
        return None

    def payload(self, req: ProviderRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
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
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "grounded_answer", "schema": req.json_schema, "strict": True},
            }
        return body

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            retry=retry_if_exception(lambda e: isinstance(e, RetryableUpstream)),
            wait=_WaitRetryAfter(self.retry_cap_s),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "upstream_retry", attempt=rs.attempt_number, error=repr(rs.outcome and rs.outcome.exception())
            ),
        )

    async def _open(self, req: ProviderRequest, stream: bool) -> httpx.Response:
        request = self.http.build_request(
            "POST",
            self.completions_url,
            content=json_dumps(self.payload(req, stream)),
            headers={**self.post_headers, **outgoing_headers()},
            timeout=httpx.Timeout(req.timeout_s, read=self.idle_timeout_s if stream else req.timeout_s),
        )
        async for attempt in self._retrying():
            with attempt:
                try:
                    resp = await self.http.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise _map_transport_error(exc) from exc
                if resp.status_code != 200:
                    try:
                        body = (await resp.aread()).decode(errors="replace")
                    except httpx.HTTPError:
                        body = ""
                    finally:
                        await resp.aclose()
                    raise _error_from_status(resp, body)
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def generate(self, req: ProviderRequest) -> ProviderResult:
        resp = await self._open(req, stream=False)
        try:
            raw = await resp.aread()
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from exc
        finally:
            await resp.aclose()
        try:
            data = json_loads(raw)
            if "error" in data:
                raise _frame_error(data)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(
                ReasonCode.MALFORMED_OUTPUT, f"Unreadable answer from the model server: {exc!r}"
            ) from None
        finish = _FINISH.get(choice.get("finish_reason") or "stop", StopReason.EOS)
        return ProviderResult(text, finish, _usage(data.get("usage")) or Usage())

    async def stream(self, req: ProviderRequest) -> AsyncIterator[ProviderChunk]:
        resp = await self._open(req, stream=True)
        finish: StopReason | None = None
        usage: Usage | None = None
        saw_done = False
        try:
            async for msg in aiter_sse(resp):
                if msg.data.strip() == "[DONE]":
                    saw_done = True
                    break
                try:
                    data = json_loads(msg.data)
                except ValueError:
                    log.warning("upstream_non_json_line", line=msg.data[:200])
                    continue
                if not isinstance(data, dict):
                    continue
                if "error" in data:
                    raise _frame_error(data)
                usage = _usage(data.get("usage")) or usage
                for choice in data.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield ProviderChunk(text=piece)
                    if choice.get("finish_reason"):
                        finish = _FINISH.get(choice["finish_reason"], StopReason.EOS)
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from exc
        finally:
            await resp.aclose()
        if not saw_done and finish is None:
            raise ProviderError(
                ReasonCode.STREAM_INTERRUPTED, "The model server closed the stream mid-answer."
            )
        yield ProviderChunk(finish_reason=finish or StopReason.EOS, usage=usage)

    async def health(self) -> bool:
        try:
            resp = await self.http.get(f"{self.base_url}/models", headers=self.headers, timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def aclose(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"state": "remote", "memory_mb": 0, "base_url": self.base_url}

"""Thin handlers: parse, call the service, shape the response. A raised CairnError becomes its HTTP answer in
`cairn_core`'s exception handlers (installed by `service_app`); the OpenAI surface shapes its own (`openai_error`)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from cairn_core import (
    CairnError,
    EventStreamResponse,
    GenerateRequest,
    GenerateResponse,
    JSONResponse,
    ReasonCode,
    Status,
    cancel_on_disconnect,
    log_fields,
    metrics_response,
    openapi_route,
    parse_json_body,
    request_id_of,
    require_bearer,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import openapi
from .in_process.build import LLAMA_MISSING, build_note, build_status
from .keys import KeyStore
from .openai_api import (
    ChatFrames,
    TextFrames,
    chat_body,
    chat_request,
    completion_request,
    openai_error,
    openai_stream,
    text_body,
)
from .providers.base import ProviderRequest, ProviderResult
from .schemas import (
    AdminModelRequest,
    ChatCompletionRequest,
    CompletionRequest,
    EmbedRequest,
    KeyDeleteRequest,
    KeyGenerateRequest,
)
from .service import Completed, GenerationService, Outcome
from .streaming import generate_events

B = TypeVar("B", ChatCompletionRequest, CompletionRequest)
_CITATION_CODES = {ReasonCode.MALFORMED_OUTPUT, ReasonCode.INVALID_CITATION, ReasonCode.MISSING_CITATIONS}


def _service(request: Request) -> GenerationService:
    return request.app.state.service


def _overhead_header(started: float, provider_s: float) -> dict[str, str]:
    overhead = max(0.0, (time.perf_counter() - started - provider_s) * 1000)
    return {"X-Gateway-Overhead-Ms": f"{overhead:.3f}"}


async def generate(request: Request) -> Response:
    started = time.perf_counter()
    service = _service(request)
    rid = request_id_of(request)
    fields = log_fields(request)
    req = await parse_json_body(request, GenerateRequest)
    try:
        if req.stream:
            handle = await cancel_on_disconnect(request, service.open_stream(req))
            return EventStreamResponse(
                generate_events(service, handle, req, rid, started, fields),
                headers=_overhead_header(started, handle.ttft_s),
            )
        done: Completed = await cancel_on_disconnect(request, service.complete(req))
    except CairnError as exc:
        outcome = Outcome("generate", started)
        if req.stream or not (req.citations_required and exc.reason_code in _CITATION_CODES):
            outcome.fail(exc.reason_code)
            service.record(outcome, fields)
            raise
        # The model answered, but not with valid citations: a controlled fallback, never the bad citation.
        outcome.fail(exc.reason_code, Status.FALLBACK)
        service.record(outcome, fields)
        body = GenerateResponse(
            status=Status.FALLBACK,
            reason_code=exc.reason_code,
            message=exc.message,
            request_id=rid,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return JSONResponse(body.model_dump(mode="json"))
    result, grounded = done.result, done.grounded
    outcome = Outcome.served("generate", started, done)
    body = GenerateResponse(
        status=outcome.status,
        text=grounded.answer if grounded else result.text,
        answer=grounded.answer if grounded else result.text,
        citations=grounded.citations if grounded else [],
        model=done.model,
        provider=done.provider_name,
        usage=result.usage,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        stop_reason=result.finish_reason,
        reason_code=outcome.reason,
        message=done.fallback_reason.message if done.fallback_reason else None,
        request_id=rid,
        answered_by="fallback_provider" if done.fallback_reason else "model",
    )
    service.record(outcome, fields)
    return JSONResponse(body.model_dump(mode="json"), headers=_overhead_header(started, done.provider_s))


async def chat_completions(request: Request) -> Response:
    return await _openai_generation(request, ChatCompletionRequest, chat_request, ChatFrames, chat_body)


async def completions(request: Request) -> Response:
    """OpenAI's legacy completions, for base models: the prompt reaches the model as is."""
    return await _openai_generation(request, CompletionRequest, completion_request, TextFrames, text_body)


async def _openai_generation(
    request: Request,
    model: type[B],
    shape: Callable[[GenerationService, B], tuple[GenerateRequest, ProviderRequest]],
    frames: type[ChatFrames | TextFrames],
    answer: Callable[[str, str, ProviderResult], dict[str, Any]],
) -> Response:
    started = time.perf_counter()
    service = _service(request)
    rid = request_id_of(request) or ""
    fields = log_fields(request)
    endpoint = frames.endpoint
    try:
        body = await parse_json_body(request, model)
        req, preq = shape(service, body)
        if body.stream:
            handle = await cancel_on_disconnect(request, service.open_stream(req, preq))
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStreamResponse(
                openai_stream(
                    service, handle, frames(rid, handle.model), include_usage, rid, started, fields
                ),
                headers=_overhead_header(started, handle.ttft_s),
            )
        done: Completed = await cancel_on_disconnect(request, service.complete(req, preq))
    except CairnError as exc:
        failed = Outcome(endpoint, started)
        failed.fail(exc.reason_code)
        service.record(failed, fields)
        return openai_error(exc, rid)
    service.record(Outcome.served(endpoint, started, done), fields)
    return JSONResponse(
        answer(rid, done.model, done.result), headers=_overhead_header(started, done.provider_s)
    )


async def embed(request: Request) -> Response:
    body = await parse_json_body(request, EmbedRequest)
    vectors, tokens, model = await _embed(request, body)
    return JSONResponse(
        {
            "embeddings": vectors,
            "model": model,
            "dims": len(vectors[0]) if vectors else 0,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def embeddings_openai(request: Request) -> Response:
    body = await parse_json_body(request, EmbedRequest)
    vectors, tokens, model = await _embed(request, body)
    return JSONResponse(
        {
            "object": "list",
            "model": model,
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _encode(vector: list[float], encoding: str | None) -> list[float] | str:
    # The openai SDK asks for base64 by default: little-endian float32, as OpenAI sends it.
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


async def _embed(request: Request, body: EmbedRequest) -> tuple[list[list[float]], int, str]:
    registry = _service(request).registry
    texts = body.input if isinstance(body.input, list) else [body.input]
    limit = registry.settings.max_embed_inputs
    if len(texts) > limit:
        raise CairnError(ReasonCode.BAD_REQUEST, f"At most {limit} inputs per embedding request.")
    if registry.embedder is None:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE, "No embedding model is configured (LLM_EMBED_PROVIDER)."
        )
    vectors, tokens = await cancel_on_disconnect(request, registry.embedder.embed(texts))
    registry.metrics.embeddings.labels(registry.embedder.model).inc(len(texts))
    registry.metrics.embed_inputs.labels(registry.embedder.model).observe(len(texts))
    return vectors, tokens, registry.embedder.model


async def models(request: Request) -> Response:
    registry = _service(request).registry
    data = [{**e.info(), "default": e.alias == registry.default_alias} for e in registry.all_entries()]
    embedder = registry.embedder
    if embedder is not None:
        data.append(
            {
                "id": embedder.model,
                "object": "model",
                "owned_by": "cairn",
                "provider": embedder.name,
                "kind": "embedding",
                "state": "loaded",
                "dims": embedder.dims,
                "manifest": manifest.listing() if (manifest := getattr(embedder, "manifest", None)) else None,
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the default model answers; degraded (still 200: requests are served) when only the fallback
    chain does, with the reason and, on a first run, the progress of the llama.cpp build; 503 when nothing
    can answer."""
    registry = _service(request).registry
    entry = registry.get(registry.default_alias)
    ok = entry.provider is not None and await entry.provider.health()
    registry.metrics.provider_up.labels(entry.alias).set(1 if ok else 0)
    body: dict[str, Any] = {"status": "ready", "model": entry.alias, "provider": entry.spec.provider}
    info = entry.provider.info() if entry.provider is not None and hasattr(entry.provider, "info") else {}
    if info.get("notice"):  # loaded, but not as configured (the safe settings after a crashed probe)
        body["notice"] = info["notice"]
    if ok:
        return JSONResponse(body)
    fallbacks = [f.spec.provider for f in registry.fallbacks if f.provider is not None]
    note = build_note(registry.settings.build_status_path)
    not_ready = getattr(entry.provider, "not_ready_reason", None)
    message = entry.error or (not_ready and not_ready()) or "The default model is not usable."
    body.update(
        status="degraded" if fallbacks else "unavailable",
        reason_code=(entry.reason_code or ReasonCode.PROVIDER_UNAVAILABLE).value,
        request_id=request_id_of(request),
        # While the first run's build is under way, "not installed" is its expected state, not advice to act on.
        message=note if note and LLAMA_MISSING in message else f"{message} {note}" if note else message,
        fallbacks=fallbacks,
        build=build_status(registry.settings.build_status_path) if note else None,
    )
    return JSONResponse(body, status_code=200 if fallbacks else 503)


async def metrics(request: Request) -> Response:
    service = _service(request)
    service.registry.update_gauges()
    return metrics_response(service.metrics.registry)


# --- admin: load, unload, set default (bearer LLM_ADMIN_TOKEN) -------------------------------------------


def _require_admin(request: Request) -> None:
    require_bearer(request, _service(request).settings.admin_token, "LLM_ADMIN_TOKEN")


async def admin_action(request: Request) -> Response:
    _require_admin(request)
    body = await parse_json_body(request, AdminModelRequest)
    registry = _service(request).registry
    action = request.path_params["action"]
    if action == "load":
        entry = await registry.load(body.alias)
    elif action == "unload":
        entry = await registry.unload(body.alias)
    elif action == "default":
        entry = registry.set_default(body.alias)
    else:
        raise CairnError(ReasonCode.NOT_FOUND, f"Unknown admin action {action!r}.")
    return JSONResponse({**entry.info(), "default": entry.alias == registry.default_alias})


# --- virtual keys: created, listed and revoked with LLM_MASTER_KEY (keys.py) ----------------------------------


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    if not keys.master:
        raise CairnError(ReasonCode.NOT_FOUND, "Virtual keys are off: set LLM_MASTER_KEY to manage them.")
    if not keys.is_master(request.headers):
        raise CairnError(
            ReasonCode.UNAUTHORIZED, "Managing keys needs 'Authorization: Bearer <LLM_MASTER_KEY>'."
        )
    return keys


async def key_generate(request: Request) -> Response:
    keys = _keys(request)
    body = await parse_json_body(request, KeyGenerateRequest)
    return JSONResponse(await keys.generate(body.key_alias))


async def key_list(request: Request) -> Response:
    return JSONResponse({"keys": await _keys(request).listed()})


async def key_delete(request: Request) -> Response:
    keys = _keys(request)
    body = await parse_json_body(request, KeyDeleteRequest)
    return JSONResponse({"deleted_keys": await keys.delete(body.keys)})


ROUTES = [
    Route("/v1/generate", generate, methods=["POST"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embed", embed, methods=["POST"]),
    Route("/v1/embeddings", embeddings_openai, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/admin/models/{action}", admin_action, methods=["POST"]),
    Route("/key/generate", key_generate, methods=["POST"]),
    Route("/key/list", key_list, methods=["GET"]),
    Route("/key/delete", key_delete, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    openapi_route(openapi.document),
]

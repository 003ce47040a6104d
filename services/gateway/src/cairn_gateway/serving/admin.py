"""The operator's APIs: the models and readiness, loading and unloading models (LLM_ADMIN_TOKEN), and the
virtual keys (LLM_MASTER_KEY, keys.py)."""

from __future__ import annotations

from typing import Any

from cairn_core import CairnError, JSONResponse, ReasonCode, metrics_response, request_id_of, require_bearer
from starlette.requests import Request
from starlette.responses import Response

from ..in_process.build import LLAMA_MISSING, build_note, build_status
from ..keys import KeyStore
from ..model_registry import ModelRegistry
from ..protocol.admin import AdminModelRequest, KeyDeleteRequest, KeyGenerateRequest


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.engine.registry
    return registry


async def models(request: Request) -> Response:
    registry = _registry(request)
    data = [{**e.info(), "default": e.alias == registry.default_alias} for e in registry.all_entries()]
    embedder = registry.embedder
    if embedder is not None:
        manifest = getattr(embedder, "manifest", None)
        data.append(
            {
                "id": embedder.model,
                "object": "model",
                "owned_by": "cairn",
                "provider": embedder.name,
                "kind": "embedding",
                "state": "loaded",
                "dims": embedder.dims,
                "manifest": manifest.listing() if manifest else None,
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the default model answers; degraded (still 200: requests are served) when only the fallback
    chain does, with the reason and, on a first run, the progress of the llama.cpp build; 503 when nothing
    can answer."""
    registry = _registry(request)
    entry = registry.get(registry.default_alias)
    ok = entry.provider is not None and await entry.provider.health()
    registry.metrics.provider_up.labels(entry.alias).set(1 if ok else 0)
    body: dict[str, Any] = {"status": "ready", "model": entry.alias, "provider": entry.spec.provider}
    info = entry.provider_info()
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
    registry = _registry(request)
    registry.update_gauges()
    return metrics_response(registry.metrics.registry)


def require_admin(request: Request) -> None:
    require_bearer(request, _registry(request).settings.admin_token, "LLM_ADMIN_TOKEN")


async def admin_action(request: Request, body: AdminModelRequest) -> Response:
    """Load, unload, or make the default (guarded by `require_admin`)."""
    registry = _registry(request)
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


def master_keys(request: Request) -> KeyStore:
    """The key store, to a caller with the master key (the guard of the key routes)."""
    keys: KeyStore = request.app.state.keys
    if not keys.master:
        raise CairnError(ReasonCode.NOT_FOUND, "Virtual keys are off: set LLM_MASTER_KEY to manage them.")
    if not keys.is_master(request.headers):
        raise CairnError(
            ReasonCode.UNAUTHORIZED, "Managing keys needs 'Authorization: Bearer <LLM_MASTER_KEY>'."
        )
    return keys


async def key_generate(request: Request, body: KeyGenerateRequest) -> Response:
    return JSONResponse(await master_keys(request).generate(body.key_alias))


async def key_list(request: Request) -> Response:
    return JSONResponse({"keys": await master_keys(request).listed()})


async def key_delete(request: Request, body: KeyDeleteRequest) -> Response:
    return JSONResponse({"deleted_keys": await master_keys(request).delete(body.keys)})

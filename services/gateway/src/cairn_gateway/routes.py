"""The gateway's routes: each one its handler and its OpenAPI operation, so `/openapi.json` is built from this
table and no route can exist without its document (cairn_core.web.openapi). The handlers live in `serving/`,
one module per API; a raised CairnError becomes its HTTP answer in cairn-core's exception handlers, except on
the OpenAI-compatible API, which answers in OpenAI's shape (serving/openai.py)."""

from __future__ import annotations

from typing import Any

from cairn_core import (
    CONTRACT_VERSION,
    EVENT_TYPES,
    HEALTHZ,
    METRICS,
    Endpoint,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    Operation,
    Param,
    Reply,
    Stream,
    openapi_document,
    openapi_route,
)
from starlette.routing import BaseRoute

from .protocol.admin import (
    AdminModelRequest,
    GatewayReady,
    KeyDeleted,
    KeyDeleteRequest,
    KeyGenerateRequest,
    KeyInfo,
    KeyList,
    ModelInfo,
    ModelList,
)
from .protocol.embeddings import EmbeddingsResponse, EmbedRequest, EmbedResponse
from .protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIErrorBody,
    TextCompletion,
)
from .serving import admin, embeddings, generate, openai

# What a generation can end in before its first byte: a bad request or token limit (400), an unknown model
# (404), a model that refuses the request (422), a full queue (429), and the provider failing (502-504).
_GENERATION_ERRORS = (404, 422, 429, 502, 503, 504)
_CONTRACT_STREAM = Stream({name: [model] for name, model in EVENT_TYPES.items()})
_CHAT_STREAM = Stream({"message": [ChatCompletionChunk, OpenAIErrorBody]}, sentinel="[DONE]")
_TEXT_STREAM = Stream({"message": [TextCompletion, OpenAIErrorBody]}, sentinel="[DONE]")
_ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}]
_MASTER: list[dict[str, list[str]]] = [{"masterKey": []}]


def _openai(path: str, summary: str, body: type[Any], reply: type[Any], stream: Stream) -> Operation:
    return Operation(
        "POST",
        path,
        summary,
        {200: Reply(reply, stream=stream)},
        errors=_GENERATION_ERRORS,
        body=body,
        error_model=OpenAIErrorBody,
        tags=["openai"],
    )


def _embedding(path: str, summary: str, reply: type[Any], tag: str) -> Operation:
    return Operation("POST", path, summary, {200: Reply(reply)}, errors=(503,), body=EmbedRequest, tags=[tag])


def _keys(method: str, path: str, summary: str, reply: type[Any], body: type[Any] | None = None) -> Operation:
    """The virtual key routes (keys.py): with LLM_MASTER_KEY as the bearer token, 404 while keys are off."""
    errors = (401, 404, 500)
    return Operation(
        method, path, summary, {200: Reply(reply)}, errors, body, security=_MASTER, tags=["keys"]
    )


ROUTES: list[BaseRoute] = [
    Endpoint(
        generate.generate,
        Operation(
            "POST",
            "/v1/generate",
            "Generate (the contract docs/contract.md); `stream: true` answers with SSE events",
            {200: Reply(GenerateResponse, stream=_CONTRACT_STREAM)},
            errors=_GENERATION_ERRORS,
            body=GenerateRequest,
            tags=["generate"],
        ),
    ),
    Endpoint(
        openai.chat_completions,
        _openai(
            "/v1/chat/completions",
            "OpenAI-compatible chat completions; `stream: true` answers with `chat.completion.chunk` frames",
            ChatCompletionRequest,
            ChatCompletion,
            _CHAT_STREAM,
        ),
        parse_body=False,  # parsed in serving/openai.py, so that a bad body is answered in OpenAI's shape
    ),
    Endpoint(
        openai.completions,
        _openai(
            "/v1/completions",
            "OpenAI-compatible legacy completions for base models: the prompt is continued as is; "
            "`stream: true` answers with `text_completion` frames",
            CompletionRequest,
            TextCompletion,
            _TEXT_STREAM,
        ),
        parse_body=False,
    ),
    Endpoint(embeddings.embed, _embedding("/v1/embed", "Embed texts", EmbedResponse, "embeddings")),
    Endpoint(
        embeddings.embeddings,
        _embedding("/v1/embeddings", "OpenAI-compatible embeddings", EmbeddingsResponse, "openai"),
    ),
    Endpoint(
        admin.models,
        Operation(
            "GET", "/v1/models", "Chat models and the embedder", {200: Reply(ModelList)}, tags=["models"]
        ),
    ),
    Endpoint(
        admin.admin_action,
        Operation(
            "POST",
            "/admin/models/{action}",
            "Load or unload a model, or make it the default (Authorization: Bearer LLM_ADMIN_TOKEN)",
            {200: Reply(ModelInfo)},
            errors=(401, 404, 502, 503, 504),
            body=AdminModelRequest,
            params=[Param("action", "path", {"type": "string", "enum": ["load", "unload", "default"]}, True)],
            security=_ADMIN,
            tags=["admin"],
        ),
        guard=admin.require_admin,
    ),
    Endpoint(
        admin.key_generate,
        _keys(
            "POST",
            "/key/generate",
            "Create a virtual key (Authorization: Bearer LLM_MASTER_KEY); the key is shown only here",
            KeyInfo,
            KeyGenerateRequest,
        ),
        guard=admin.master_keys,
    ),
    Endpoint(
        admin.key_list,
        _keys("GET", "/key/list", "The virtual keys, by id and alias (never the keys)", KeyList),
    ),
    Endpoint(
        admin.key_delete,
        _keys(
            "POST",
            "/key/delete",
            "Revoke virtual keys by id or by the key itself",
            KeyDeleted,
            KeyDeleteRequest,
        ),
        guard=admin.master_keys,
    ),
    Endpoint(admin.healthz, HEALTHZ),
    Endpoint(
        admin.readyz,
        Operation(
            "GET",
            "/readyz",
            "Readiness: the default model answers (`ready`), or only the fallback chain does (`degraded`)",
            {200: Reply(GatewayReady)},
            error_replies={
                503: Reply(ErrorBody, description="Neither the default model nor a fallback answers")
            },
            tags=["ops"],
        ),
    ),
    Endpoint(admin.metrics, METRICS),
]


def document() -> dict[str, Any]:
    return openapi_document(
        "Cairn LLM gateway",
        CONTRACT_VERSION,
        ROUTES,
        guarded_errors=(401,),  # the internal token (cairn_core.web.auth), when it is set
        security_schemes={
            "adminBearer": {"type": "http", "scheme": "bearer"},
            "masterKey": {"type": "http", "scheme": "bearer"},
        },
    )


ROUTES.append(openapi_route(document))

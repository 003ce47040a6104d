"""The gateway's `/openapi.json`: every route of routes.py, with the models it parses and answers with."""

from __future__ import annotations

from typing import Any

from cairn_core import (
    CONTRACT_VERSION,
    EVENT_TYPES,
    HEALTHZ,
    METRICS,
    ErrorBody,
    GenerateRequest,
    GenerateResponse,
    Operation,
    Param,
    Reply,
    Stream,
    openapi_document,
)

from .schemas import (
    AdminModelRequest,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    GatewayReady,
    KeyDeleted,
    KeyDeleteRequest,
    KeyGenerateRequest,
    KeyInfo,
    KeyList,
    ModelInfo,
    ModelList,
    OpenAIErrorBody,
    TextCompletion,
)

# What a generation can end in before its first byte: a bad request or token limit (400), an unknown model
# (404), a model that refuses the request (422), a full queue (429), and the provider failing (502-504).
_GENERATION_ERRORS = (404, 422, 429, 502, 503, 504)
_CONTRACT_STREAM = Stream({name: [model] for name, model in EVENT_TYPES.items()})
_OPENAI_STREAM = Stream({"message": [ChatCompletionChunk, OpenAIErrorBody]}, sentinel="[DONE]")
_TEXT_STREAM = Stream({"message": [TextCompletion, OpenAIErrorBody]}, sentinel="[DONE]")
_ADMIN: list[dict[str, list[str]]] = [{"adminBearer": []}]
_MASTER: list[dict[str, list[str]]] = [{"masterKey": []}]

OPERATIONS = [
    Operation(
        "POST",
        "/v1/generate",
        "Generate (the contract docs/contract.md); `stream: true` answers with SSE events",
        {200: Reply(GenerateResponse, stream=_CONTRACT_STREAM)},
        errors=_GENERATION_ERRORS,
        body=GenerateRequest,
        tags=["generate"],
    ),
    Operation(
        "POST",
        "/v1/chat/completions",
        "OpenAI-compatible chat completions; `stream: true` answers with `chat.completion.chunk` frames",
        {200: Reply(ChatCompletion, stream=_OPENAI_STREAM)},
        errors=_GENERATION_ERRORS,
        body=ChatCompletionRequest,
        error_model=OpenAIErrorBody,
        tags=["openai"],
    ),
    Operation(
        "POST",
        "/v1/completions",
        "OpenAI-compatible legacy completions for base models: the prompt is continued as is; "
        "`stream: true` answers with `text_completion` frames",
        {200: Reply(TextCompletion, stream=_TEXT_STREAM)},
        errors=_GENERATION_ERRORS,
        body=CompletionRequest,
        error_model=OpenAIErrorBody,
        tags=["openai"],
    ),
    Operation(
        "POST",
        "/v1/embed",
        "Embed texts",
        {200: Reply(EmbedResponse)},
        errors=(503,),
        body=EmbedRequest,
        tags=["embeddings"],
    ),
    Operation(
        "POST",
        "/v1/embeddings",
        "OpenAI-compatible embeddings",
        {200: Reply(EmbeddingsResponse)},
        errors=(503,),
        body=EmbedRequest,
        tags=["openai"],
    ),
    Operation("GET", "/v1/models", "Chat models and the embedder", {200: Reply(ModelList)}, tags=["models"]),
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
    Operation(
        "POST",
        "/key/generate",
        "Create a virtual key (Authorization: Bearer LLM_MASTER_KEY); the key is shown only here",
        {200: Reply(KeyInfo)},
        errors=(401, 404, 500),
        body=KeyGenerateRequest,
        security=_MASTER,
        tags=["keys"],
    ),
    Operation(
        "GET",
        "/key/list",
        "The virtual keys, by id and alias (never the keys)",
        {200: Reply(KeyList)},
        errors=(401, 404, 500),
        security=_MASTER,
        tags=["keys"],
    ),
    Operation(
        "POST",
        "/key/delete",
        "Revoke virtual keys by id or by the key itself",
        {200: Reply(KeyDeleted)},
        errors=(401, 404, 500),
        body=KeyDeleteRequest,
        security=_MASTER,
        tags=["keys"],
    ),
    HEALTHZ,
    Operation(
        "GET",
        "/readyz",
        "Readiness: the default model answers (`ready`), or only the fallback chain does (`degraded`)",
        {200: Reply(GatewayReady)},
        error_replies={503: Reply(ErrorBody, description="Neither the default model nor a fallback answers")},
        tags=["ops"],
    ),
    METRICS,
]


def document() -> dict[str, Any]:
    return openapi_document(
        "Cairn LLM gateway",
        CONTRACT_VERSION,
        OPERATIONS,
        guarded_errors=(401,),  # the internal token (cairn_core _auth), when it is set
        security_schemes={
            "adminBearer": {"type": "http", "scheme": "bearer"},
            "masterKey": {"type": "http", "scheme": "bearer"},
        },
    )

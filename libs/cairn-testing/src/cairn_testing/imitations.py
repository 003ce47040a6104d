"""What real OpenAI-compatible servers do with `response_format`, for `fake_openai --imitate NAME`.

Every real server takes `text`; they differ on the structured forms, and a gateway that assumes OpenAI's
behaviour everywhere gets errors instead of answers. Each row is what that server's source says, or what it
was measured to answer (docs/gateway.md, "Structured output"):

| NAME | imitates | `json_schema` | `json_object` | another `type` |
|---|---|---|---|---|
| `openai` (default) | OpenAI, and the fake as it always was | honoured | honoured | accepted |
| `llama-cpp-python` | `python -m llama_cpp.server` 0.3.36 (`make local-llm-up`), measured | HTTP 500 `internal_server_error`, "1 validation error: … Input should be 'text' or 'json_object'", streamed or not | honoured, held to its `schema` key (a grammar) | the same 500 |
| `ollama` | Ollama's `/v1` (0.5 and later, `openai/openai.go`) | honoured (the schema becomes `format`) | honoured (`format: "json"`; a `schema` key is ignored) | ignored: the answer is plain text |
| `vllm` | vLLM's OpenAI server, default structured-output backend | honoured | honoured (any object; a `schema` key is ignored) | HTTP 400 `BadRequestError` (pydantic's literal error) |
| `vllm-xgrammar` | vLLM with its backend pinned to xgrammar, whose check (vLLM 0.7-0.8) refuses `enum`, `minLength`, `minItems`/`maxItems` | HTTP 400 "The provided JSON schema contains features not supported by xgrammar." when the schema has any of them | honoured (any object) | HTTP 400 as `vllm` |
| `no-structured-output` | no particular server: one that takes no structured form at all | HTTP 400 naming `response_format` | the same 400 | the same 400 |

"Honoured" means the fake answers with the grounded JSON, citing an id the schema allows; with no usable
`response_format` a grounded request is answered as an unconstrained model might: the JSON in a code fence after
a sentence of prose, which the gateway's tolerant parser has to find.
"""

from __future__ import annotations

from typing import Any

IMITATIONS = ("openai", "llama-cpp-python", "ollama", "vllm", "vllm-xgrammar", "no-structured-output")

# Measured from llama-cpp-python 0.3.36's server (FastAPI 0.165, pydantic 2.14): its route handler turns every
# exception, FastAPI's request validation included, into a 500 whose message is the exception's text.
LLAMA_CPP_PYTHON_REFUSAL = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input "
    "should be 'text' or 'json_object'\", 'input': '{type}', 'ctx': {'expected': \"'text' or 'json_object'\"}}"
    '\n\n  File ".../llama_cpp/server/app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
)
XGRAMMAR_REFUSAL = "The provided JSON schema contains features not supported by xgrammar."
_XGRAMMAR_UNSUPPORTED = {
    "string": ("minLength", "maxLength", "format"),
    "array": ("uniqueItems", "contains", "minContains", "maxContains", "minItems", "maxItems"),
    "object": ("minProperties", "maxProperties", "propertyNames", "patternProperties"),
}


def _has_xgrammar_unsupported(node: Any) -> bool:
    if isinstance(node, list):
        return any(_has_xgrammar_unsupported(item) for item in node)
    if not isinstance(node, dict):
        return False
    if "enum" in node or any(k in node for k in _XGRAMMAR_UNSUPPORTED.get(node.get("type", ""), ())):
        return True
    return any(_has_xgrammar_unsupported(value) for value in node.values())


def refusal(imitate: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON body with which the imitated server refuses this request's `response_format`."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    kind = fmt["type"]
    if imitate == "no-structured-output":
        message = f"response_format {kind!r} is not supported by this server"
        return 400, {
            "error": {"message": message, "type": "invalid_request_error", "param": "response_format"}
        }
    if imitate == "llama-cpp-python" and kind != "json_object":
        message = LLAMA_CPP_PYTHON_REFUSAL.replace("{type}", str(kind))
        return 500, {
            "error": {"message": message, "type": "internal_server_error", "param": None, "code": None}
        }
    if imitate.startswith("vllm"):
        if kind not in ("json_object", "json_schema"):
            message = (
                "1 validation error for ChatCompletionRequest\nresponse_format.type\n  Input should be 'text', "
                f"'json_object' or 'json_schema' [type=literal_error, input_value='{kind}', input_type=str]"
            )
            return 400, _vllm_error(message)
        schema = (fmt.get("json_schema") or {}).get("schema")
        if imitate == "vllm-xgrammar" and kind == "json_schema" and _has_xgrammar_unsupported(schema):
            return 400, _vllm_error(XGRAMMAR_REFUSAL)
    return None


def _vllm_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


def constrained(imitate: str, body: dict[str, Any]) -> bool:
    """Whether the answer is held to JSON: a `response_format` the imitated server honours."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if imitate == "ollama":
        return kind in ("json_object", "json_schema")
    return bool(fmt)

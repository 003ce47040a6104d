"""Which OpenAI request fields reach which provider: the rule of docs/gateway.md, "OpenAI compatibility".

The gateway maps a few fields onto the contract itself (`MAPPED`). Every other field the client sent is kept
as sent: an `openai_compat` upstream receives it unchanged, because that server may honour it (tools, logprobs,
vLLM's `top_k`) and its answer's extra parts are relayed back. An in-process provider (toy, llamacpp)
cannot honour them, and silently dropping one would hand back an answer to a different question than the one
asked (no tool call, no JSON, no logprobs), so it refuses with a 400 that names the field and the provider.
Fields that ask for no behaviour pass everywhere: metadata about the caller, and a value that is the OpenAI
default (`null`, `logprobs: false`, `presence_penalty: 0`, `response_format: {"type": "text"}`, ...), which
SDKs and frameworks often send explicitly.
"""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedField

# Read by the gateway itself and turned into the contract's request; never forwarded as they came.
MAPPED = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "n",
        "stream",
        "stream_options",
    }
)

# About the caller or the billing, not the answer: accepted by every provider (and forwarded upstream).
HARMLESS = frozenset({"user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"})

# The value of each field that means "the default behaviour": accepted by every provider.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logprobs": (False, 0),  # chat: a bool; legacy completions: an int
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "tools": ([],),
    "tool_choice": (
        "none",
        "auto",
    ),  # with no tools (tools themselves are refused), neither asks for anything
    "parallel_tool_calls": (True, False),  # meaningless without tools
    "functions": ([],),
    "function_call": ("none", "auto"),
    "store": (False,),
    "modalities": (["text"],),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
}


def forwarded(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields an `openai_compat` upstream receives unchanged: everything the client sent but `MAPPED`."""
    return {k: v for k, v in fields.items() if k not in MAPPED}


def asks_nothing(name: str, value: Any) -> bool:
    if name == "response_format" and isinstance(value, dict):
        return value.get("type") == "text"
    return value is None or name in HARMLESS or any(value == n for n in _NEUTRAL.get(name, ()))


def check_honoured(provider_cls: Any, provider: str, alias: str, fields: dict[str, Any]) -> None:
    """Raise a 400 naming the first field this provider cannot honour. A provider class says what it honours:
    `passthrough = True` (everything: a remote OpenAI-compatible server) and `response_formats` (the
    `response_format.type` values it can constrain its output to)."""
    if getattr(provider_cls, "passthrough", False):
        return
    for name, value in fields.items():
        # MAPPED ones here are a tool conversation's own messages: an in-process model reads their text.
        if name in MAPPED or asks_nothing(name, value):
            continue
        if (
            name == "response_format"
            and isinstance(value, dict)
            and value.get("type") in getattr(provider_cls, "response_formats", ())
        ):
            continue
        shown = (
            f"{name}={value.get('type')!r}" if name == "response_format" and isinstance(value, dict) else name
        )
        raise UnsupportedField(
            name,
            f"'{shown}' is not supported by the {provider} provider (model {alias!r}); only openai_compat "
            "upstreams receive fields beyond the gateway's own (docs/gateway.md, OpenAI compatibility).",
        )

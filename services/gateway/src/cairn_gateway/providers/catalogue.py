"""The provider catalogue: provider names (`LLM_PROVIDER`, `LLM_MODELS`' `provider`, `LLM_EMBED_PROVIDER`) to
the classes that implement them, as `"module:Class"` strings imported only when chosen, so `llama_cpp` and
`onnxruntime` load only in processes that use them (as uvicorn's `HTTP_PROTOCOLS` and `importer.py` do).

A name that is not in the catalogue but contains `:` is an import path: a provider of the operator's own.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported only when chosen, so `llama_cpp` and `onnxruntime` load only in processes that use them.
PROVIDERS: dict[str, str] = {
    "toy": "cairn_gateway.providers.toy:ToyProvider",
    "sources": "cairn_gateway.providers.sources:SourcesProvider",
    "openai_compat": "cairn_gateway.providers.openai_compat:OpenAICompatProvider",
    "router": "cairn_gateway.providers.router:RouterProvider",
    "llamacpp": "cairn_gateway.providers.llamacpp:LlamaCppProvider",
}
EMBEDDERS: dict[str, str] = {
    "toy": "cairn_gateway.providers.toy:ToyEmbedder",
    "onnx": "cairn_gateway.providers.onnx_embed:OnnxEmbedder",
}


def import_from_string(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def provider_class(name: str, table: dict[str, str] = PROVIDERS) -> Any:
    if name not in table and ":" in name:  # "module:Class": a provider of the operator's own, by import path
        return import_from_string(name)
    try:
        ref = table[name]
    except KeyError:
        raise ValueError(f"Unknown provider {name!r}; choose one of {sorted(table)}") from None
    return import_from_string(ref)

"""The messages between the gateway and a model worker process: one JSON object per line, both ways.

The gateway writes to the worker's stdin:
    {"op": "init", "engine": "module:Class", "spec": {...}, "settings": {...}, "path": "...",
     "extra_bufts": true, "probe": true}                      once, first
    {"op": "generate", "id": 7, "req": {...}}                 a ProviderRequest
    {"op": "cancel", "id": 7}                                 the caller went away: stop within a token

The worker writes to the gateway (a pipe of its own: fd 1 is redirected to stderr so that nothing a native
library prints can corrupt the protocol):
    {"op": "ready", "info": {...}}                            loaded (and probed): requests may come
    {"op": "load_failed", "reason_code": "...", "message": "..."}
    {"id": 7, "chunk": {...}}                                 a ProviderChunk
    {"id": 7, "end": true, "info": {...}}                     the generation is over; the engine's fresh info
    {"id": 7, "error": {"reason_code": "...", "message": "..."}, "info": {...}}
    {"op": "info", "info": {...}}                            the engine's counters changed (at most every 0.1 s)

JSON lines keep the boundary cheap (a few microseconds a token against the ~20 ms a token takes on a CPU) and
readable with `strace`; nothing here depends on llama.cpp, so one worker runs any threaded engine.
"""

from __future__ import annotations

import json
from typing import Any

from cairn_core import ChatMessage, ContextChunk, StopReason, Usage

from ..providers.base import ProviderChunk, ProviderRequest


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def request_to_wire(req: ProviderRequest) -> dict[str, Any]:
    return {
        "messages": [m.model_dump() for m in req.messages],
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop,
        "seed": req.seed,
        "json_schema": req.json_schema,
        "prompt": req.prompt,
        "context": [_chunk_dict(c) for c in req.context],
        "timeout_s": req.timeout_s,
        "raw": req.raw,
        "openai": req.openai,
    }


def _chunk_dict(chunk: Any) -> dict[str, Any]:
    return chunk.model_dump() if isinstance(chunk, ContextChunk) else dict(chunk)


def request_from_wire(data: dict[str, Any]) -> ProviderRequest:
    return ProviderRequest(
        messages=[ChatMessage.model_validate(m) for m in data["messages"]],
        max_tokens=data["max_tokens"],
        temperature=data["temperature"],
        top_p=data["top_p"],
        stop=list(data["stop"]),
        seed=data["seed"],
        json_schema=data["json_schema"],
        prompt=data["prompt"],
        context=[ContextChunk.model_validate(c) for c in data["context"]],
        timeout_s=data["timeout_s"],
        raw=data["raw"],
        openai=data["openai"],
    )


def chunk_to_wire(chunk: ProviderChunk) -> dict[str, Any]:
    out: dict[str, Any] = {"text": chunk.text}
    if chunk.finish_reason is not None:
        out["finish_reason"] = chunk.finish_reason.value
    if chunk.usage is not None:
        out["usage"] = chunk.usage.model_dump()
    return out


def chunk_from_wire(data: dict[str, Any]) -> ProviderChunk:
    finish = data.get("finish_reason")
    usage = data.get("usage")
    return ProviderChunk(
        text=data.get("text", ""),
        finish_reason=StopReason(finish) if finish else None,
        usage=Usage.model_validate(usage) if usage else None,
    )

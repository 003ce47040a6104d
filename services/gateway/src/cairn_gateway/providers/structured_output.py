"""How `openai_compat` asks an upstream for a grounded answer's JSON, and what it learns when the upstream refuses.

Three modes, strongest first:

- `json_schema`: `response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`, OpenAI's
  structured outputs. vLLM, Ollama (0.5 and later) and llama.cpp's own `llama-server` accept it too.
- `json_object`: `{"type": "json_object", "schema": …}`. llama-cpp-python's server (`python -m llama_cpp.server`,
  what `make local-llm-up` runs) knows only `text` and `json_object`, and turns the `schema` key into a grammar
  (`llama_chat_format._grammar_for_response_format`), so the answer is still held to the schema there; vLLM and
  Ollama hold it to "a JSON object" and ignore the key.
- `prompt`: no `response_format` at all. The grounded prompt asks for the JSON, `parse_grounded` forgives text
  around it, and `validate_citations` refuses ids that were not given: a bad answer becomes a labelled fallback.

A server that does not take a mode says so before it generates anything: llama-cpp-python answers HTTP 500
("Input should be 'text' or 'json_object'"), vLLM 400 (a schema its xgrammar backend cannot enforce), other FastAPI
servers 422. `refusal()` recognises such an answer (one of those statuses, a body that names `response_format`,
JSON schema or `json_object`). It says nothing about the server's health: it is not retried as it was, it does not
count against the circuit breaker, and the request goes out again at once in the next mode. The mode reached is
kept per upstream (one provider: one base URL and model) for the provider's life, logged once per step
(`structured_output_mode`) and shown in `/v1/models` as `structured_output`; a restart learns it again.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from cairn_core import ReasonCode

from ..errors import ProviderError

log = structlog.get_logger("openai_compat")


class Mode(StrEnum):
    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    PROMPT = "prompt"


_NEXT = {Mode.JSON_SCHEMA: Mode.JSON_OBJECT, Mode.JSON_OBJECT: Mode.PROMPT}
REFUSAL_STATUSES = frozenset({400, 422, 500})
_NAMES_A_FORMAT = re.compile(r"response_format|json[_ ]?schema|json_object", re.IGNORECASE)


def public_url(url: str) -> str:
    """A base URL fit to show: no user:password, no query string (some servers take keys there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def response_format(mode: Mode, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The `response_format` that asks for `schema` in `mode`; None in `prompt` mode."""
    if mode is Mode.JSON_SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": "grounded_answer", "schema": schema, "strict": True},
        }
    if mode is Mode.JSON_OBJECT:
        return {"type": "json_object", "schema": schema}
    return None


def refusal(status: int, body: str) -> bool:
    """Whether an upstream's error answer refuses the request's `response_format` rather than failing."""
    return status in REFUSAL_STATUSES and _NAMES_A_FORMAT.search(body) is not None


class FormatRefused(ProviderError):
    """The upstream does not take the `response_format` it was sent. For the gateway's own grounded format this
    never leaves the provider (the next mode is tried); a client's own `response_format` is a 400 naming it."""

    param = "response_format"

    def __init__(self, status: int, body: str) -> None:
        super().__init__(
            ReasonCode.BAD_REQUEST,
            f"The model server does not accept this response_format (HTTP {status}): {body[:300]}",
        )
        self.upstream_status = status
        self.body = body


class StructuredOutput:
    """The mode one upstream is asked in: `json_schema` until it refuses, then the next, never back up."""

    def __init__(self, base_url: str, model: str) -> None:
        self.upstream = public_url(base_url)
        self.model = model
        self.mode = Mode.JSON_SCHEMA

    def refused(self, mode: Mode, exc: FormatRefused) -> None:
        """The upstream refused `mode`. Step down once, however many requests in flight were refused in it."""
        following = _NEXT.get(mode)
        if mode is not self.mode or following is None:
            return  # another request learned it already (or nothing was asked for: nothing to refuse)
        self.mode = following
        log.warning(
            "structured_output_mode",
            upstream=self.upstream,
            model=self.model,
            refused=mode.value,
            mode=following.value,
            status=exc.upstream_status,
            upstream_said=exc.body[:300],
        )

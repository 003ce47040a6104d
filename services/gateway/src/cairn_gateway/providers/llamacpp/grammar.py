"""JSON output through llama.cpp grammars: the citation schema budgeted to `max_tokens`, OpenAI's
`response_format` as a schema, and the schema as GBNF with JSON's own string rule."""

from __future__ import annotations

import json
from typing import Any

from cairn_core import CairnError, ReasonCode

# JSON punctuation around the answer and each citation, in tokens, when budgeting the answer's length.
JSON_OVERHEAD_TOKENS = 12
CITATION_TOKENS = 10
# The least a grounded JSON answer needs: its punctuation, one citation and one character of answer.
GROUNDED_MIN_TOKENS = JSON_OVERHEAD_TOKENS + CITATION_TOKENS + 1


def budget_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """Bound the answer string so the JSON can close within `max_tokens` (a token is at least one char).

    Below GROUNDED_MIN_TOKENS no answer fits: the grammar would be cut before the JSON closes, so the request is
    refused rather than answered with broken JSON."""
    if max_tokens < GROUNDED_MIN_TOKENS:
        raise CairnError(
            ReasonCode.TOKEN_LIMIT,
            f"max_tokens={max_tokens} is too small for a grounded answer: its JSON with one citation needs "
            f"at least {GROUNDED_MIN_TOKENS} tokens.",
        )
    out = json.loads(json.dumps(schema))
    citations = out.get("properties", {}).get("citations", {})
    max_items = int(citations.get("maxItems", 5))
    room = max_tokens - JSON_OVERHEAD_TOKENS - CITATION_TOKENS * max_items
    if room < 8:  # a tiny budget: one citation only, and whatever answer fits
        citations["maxItems"] = max_items = 1
        room = max_tokens - JSON_OVERHEAD_TOKENS - CITATION_TOKENS
    answer = out.get("properties", {}).get("answer")
    if isinstance(answer, dict):
        answer["maxLength"] = room
    return out


def json_grammar(schema: dict[str, Any]) -> str:
    """GBNF for the schema, with raw control characters barred from strings.

    llama-cpp-python's converter lets a string hold a raw newline (`char ::= [^"\\] | ...`), which JSON
    forbids and Gemma readily writes; the rule below is the JSON spec's (and llama.cpp's own converter's).
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    lines = json_schema_to_gbnf(json.dumps(schema)).splitlines()
    return "\n".join(_JSON_CHAR if line.startswith("char ::= ") else line for line in lines)


_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a `response_format` asks for: any JSON object for `json_object`, else its schema."""
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


def grammar_for(schema: dict[str, Any]) -> Any:
    """The `LlamaGrammar` of `schema`; a schema the converter cannot turn into one is the caller's error."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_string(json_grammar(schema), verbose=False)
    except Exception as exc:
        raise CairnError(
            ReasonCode.BAD_REQUEST, f"response_format: llama.cpp cannot enforce this schema: {exc}"
        ) from None

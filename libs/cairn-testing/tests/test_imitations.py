"""The fake server's imitations refuse exactly what the servers they imitate refuse (imitations.py's table)."""

from __future__ import annotations

import pytest
from cairn_gateway.citations import json_schema
from cairn_testing.imitations import XGRAMMAR_REFUSAL, constrained, refusal

SCHEMA = {"type": "json_schema", "json_schema": {"name": "g", "schema": json_schema(["a:0"]), "strict": True}}
OBJECT = {"type": "json_object", "schema": json_schema(["a:0"])}
PLAIN = {"type": "json_schema", "json_schema": {"name": "g", "schema": {"type": "object"}}}


@pytest.mark.parametrize(
    ("imitate", "fmt", "status"),
    [
        ("llama-cpp-python", SCHEMA, 500),
        ("llama-cpp-python", OBJECT, None),
        ("ollama", SCHEMA, None),
        ("ollama", {"type": "regex"}, None),  # ignored, not refused
        ("vllm", SCHEMA, None),
        ("vllm", {"type": "regex"}, 400),
        ("vllm-xgrammar", SCHEMA, 400),  # enum, minLength, minItems
        ("vllm-xgrammar", PLAIN, None),
        ("vllm-xgrammar", OBJECT, None),
        ("no-structured-output", OBJECT, 400),
        ("openai", SCHEMA, None),
    ],
)
def test_each_imitation_refuses_what_its_server_refuses(imitate: str, fmt: dict, status: int | None) -> None:
    refused = refusal(imitate, {"response_format": fmt})
    assert (refused[0] if refused else None) == status
    if imitate == "llama-cpp-python" and refused:
        assert "Input should be 'text' or 'json_object'" in refused[1]["error"]["message"]
    if imitate == "vllm-xgrammar" and refused:
        assert refused[1]["error"]["message"] == XGRAMMAR_REFUSAL


def test_text_is_taken_everywhere_and_ollama_holds_only_the_json_forms() -> None:
    assert all(
        refusal(i, {"response_format": {"type": "text"}}) is None for i in ("llama-cpp-python", "vllm")
    )
    assert constrained("ollama", {"response_format": SCHEMA})
    assert not constrained("ollama", {"response_format": {"type": "regex"}})

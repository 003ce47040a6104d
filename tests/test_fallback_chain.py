"""Answers from the fallback chain reach the user, labelled, through all three hops (real processes).

The gateway marks them `answered_by: "fallback_provider"`; QS used to treat any status but "ok" as a failure
and answered with search results after having streamed the backup's text."""

from __future__ import annotations

from pathlib import Path

import httpx
from cairn_testing import ServerProcess, parse_sse

from .conftest import Stack, start_stack

DOC = {
    "id": "tide",
    "title": "Tide log",
    "text": "The keeper logs the tide every four hours. The log book is kept in the lamp room.",
}
QUESTION = "How often does the keeper log the tide?"


def ask(stack: Stack, question: str, stream: bool = False) -> httpx.Response:
    body = {"query": question, "stream": stream}
    return httpx.post(f"{stack.bff.url}/api/chat", json=body, timeout=60)


def upload(stack: Stack) -> None:
    assert httpx.post(f"{stack.bff.url}/api/documents", json=DOC, timeout=30).status_code in (200, 201)


def test_a_backup_providers_answer_reaches_the_user_labelled(fake: ServerProcess, tmp_path: Path) -> None:
    gateway_env = {
        "LLM_PROVIDER": "openai_compat",
        "LLM_BASE_URL": f"{fake.url}/v1",
        "LLM_MODEL": "fake-model",
        "LLM_RETRIES": "0",
        "LLM_FALLBACK_PROVIDERS": "toy",  # the backup; a remote OpenAI would be configured the same way
    }
    stack = start_stack(tmp_path, gateway_env=gateway_env)
    try:
        upload(stack)
        body = ask(stack, QUESTION + " [[fail_always]]").json()
        assert body["status"] == "ok", body
        assert body["answered_by"] == "fallback_provider" and body["provider"] == "toy"
        assert body["reason_code"] == "PROVIDER_ERROR" and "toy" in body["message"]
        assert body["answer"].startswith("The keeper logs the tide") and body["citations"]
        assert body["cache"] == "off"  # the model answers the next asker again once it is back

        events = parse_sse(ask(stack, QUESTION + " [[fail_always]] again", stream=True).text)
        names = [n for n, _ in events]
        assert "fallback" not in names and names[-1] == "done", names
        done = events[-1][1]
        assert (
            done["status"] == "ok"
            and done["answered_by"] == "fallback_provider"
            and done["provider"] == "toy"
        )
        assert "".join(d["text"] for n, d in events if n == "delta").startswith("The keeper logs")

        # The model itself answering is labelled too.
        ok = ask(stack, QUESTION).json()
        assert ok["status"] == "ok" and ok["answered_by"] == "model" and ok["provider"] == "openai_compat"
    finally:
        stack.stop()


def test_when_no_model_can_load_the_default_chain_quotes_the_sources(tmp_path: Path) -> None:
    gateway_env = {
        "LLM_PROVIDER": "llamacpp",
        "LLM_MODEL_PATH": str(tmp_path / "not-built-yet.gguf"),
        "LLM_FALLBACK_PROVIDERS": "sources",  # the shipped default, spelled out against the test stack's ""
    }
    stack = start_stack(tmp_path, gateway_env=gateway_env)
    try:
        upload(stack)
        body = ask(stack, QUESTION).json()
        assert body["status"] == "ok" and body["answered_by"] == "fallback_provider", body
        assert body["provider"] == "sources" and "quoted word for word" in body["message"]
        assert body["answer"] == DOC["text"] and body["citations"][0]["chunk_id"] == "tide:0"
        # The page's banner reads the gateway's state through the BFF.
        status = httpx.get(f"{stack.bff.url}/api/status", timeout=10).json()
        assert status["status"] == "degraded" and "not-built-yet.gguf" in status["message"]
    finally:
        stack.stop()

"""An instruct-style GGUF: the packaged Gemma 3 270M copied with a chat template in its metadata.

The copy (253 MB) is written once per test session into a temporary folder, never the repository, with the
`gguf` package; a gateway on it must render chat messages with that template, and leave raw prompts alone.
Token counts are exact, so the tests fail if the template is skipped, its special tokens are read as text,
or the bos token is doubled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess

from .conftest import generate, start_llamacpp_gateway

pytestmark = pytest.mark.model

# Gemma's own chat template, for string contents: the system text leads the first user turn.
GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = "" -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
{%- endif -%}
{%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
{{- message['content'] | trim }}
{{- '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ '<start_of_turn>model\\n' }}
{%- endif -%}"""


def write_with_template(src: Path, dst: Path, template: str) -> None:
    """A copy of `src` with `tokenizer.chat_template` set, as llama.cpp's gguf-new-metadata writes it."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None
    writer = gguf.GGUFWriter(dst, arch=arch.contents(), endianess=reader.endianess)
    key = gguf.Keys.Tokenizer.CHAT_TEMPLATE
    copy_with_new_metadata(reader, writer, {key: MetadataDetails(gguf.GGUFValueType.STRING, template)}, [])


@pytest.fixture(scope="session")
def templated_gguf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from cairn_gateway.in_process import packaged_gguf

    dst = tmp_path_factory.mktemp("gguf") / "gemma-3-270m-with-template.gguf"
    write_with_template(packaged_gguf(), dst, GEMMA_TEMPLATE)
    yield dst
    # pytest keeps the last three sessions' temporary folders: without this, 253 MB each.
    dst.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def gw(templated_gguf: Path) -> Iterator[ServerProcess]:
    srv = start_llamacpp_gateway(
        "gateway-llamacpp-template",
        LLM_EMBED_PROVIDER="toy",
        LLM_MODEL_PATH=str(templated_gguf),
        LLM_MAX_CONCURRENCY="1",
        # JSON grounded answers, so that a grounded request goes through the template (extractive
        # answers keep their own fixed prompt whatever the format).
        LLM_GROUNDED_MODE="json",
        LLM_TIMEOUT_MS="120000",
    )
    yield srv
    srv.stop()


def model_info(gw: ServerProcess) -> dict[str, Any]:
    data = httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]
    return next(m for m in data if m["provider"] == "llamacpp")


def test_a_gguf_with_a_chat_template_reports_that_format(gw: ServerProcess) -> None:
    info = model_info(gw)
    assert info["state"] == "loaded" and info["prompt_format"] == "chat_template"
    assert (info["device"], info["gpu_layers"]) == ("cpu", 0)


def test_chat_messages_are_rendered_with_the_gguf_template(gw: ServerProcess) -> None:
    hi = generate(gw, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    # <bos> <start_of_turn> user \n Hi <end_of_turn> \n <start_of_turn> model \n: 10 tokens, where the base
    # format's `Q: Hi\nA:` is 7 and the template's text read as plain text would be dozens.
    assert hi["usage"]["prompt_tokens"] == 10
    # The same turns written by hand and sent raw (a raw prompt is never templated) are as many tokens.
    # Not compared: the answers. This base model has never seen these turn tokens, its next-token
    # choices are near ties, and a prompt served from the KV cache can tip them.
    question = "What is the capital of France?"
    chat = generate(gw, messages=[{"role": "user", "content": question}], max_tokens=4, temperature=0)
    by_hand = f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
    raw = generate(gw, prompt=by_hand, max_tokens=4, temperature=0)
    assert chat["usage"]["prompt_tokens"] == raw["usage"]["prompt_tokens"] > 10


def test_a_raw_prompt_stays_raw(gw: ServerProcess) -> None:
    body = generate(gw, prompt="Hi", max_tokens=4, temperature=0)
    assert body["usage"]["prompt_tokens"] == 2  # <bos> Hi: no template, no Q:/A:


def test_json_grounded_answers_go_through_the_template_and_still_cite_given_ids(gw: ServerProcess) -> None:
    chunks = [
        {"chunk_id": "kb/vpn#3", "title": "VPN", "text": "To reach the VPN, install WireGuard."},
        {"chunk_id": "kb/coffee#0", "title": "Coffee", "text": "The coffee machine is descaled on Fridays."},
    ]
    body = generate(
        gw,
        prompt="How do I connect to the VPN?",
        citations_required=True,
        context_chunks=chunks,
        max_tokens=48,
        temperature=0,
    )
    assert body["status"] == "ok" and body["citations"], body
    assert {c["chunk_id"] for c in body["citations"]} <= {"kb/vpn#3", "kb/coffee#0"}

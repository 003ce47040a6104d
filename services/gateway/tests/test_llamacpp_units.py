"""Pieces of the in-process providers that need no model: prompt rendering, stop strings, the answer budget,
the grammar, the memory guard and the thread bridge (model manifests: test_manifests.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cairn_core import CairnError, ChatMessage, ReasonCode
from cairn_gateway.citations import json_schema
from cairn_gateway.in_process import check_memory, stream_in_thread
from cairn_gateway.in_process.base_prompt import StopScanner, render_prompt
from cairn_gateway.providers.base import ProviderChunk, ProviderRequest
from cairn_gateway.providers.llamacpp import LlamaCppProvider, generation, json_grammar
from cairn_gateway.providers.llamacpp.grammar import (
    CITATION_TOKENS,
    GROUNDED_MIN_TOKENS,
    JSON_OVERHEAD_TOKENS,
    budget_schema,
    response_schema,
)
from cairn_gateway.settings import GatewaySettings, ModelSpec


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLM_PROVIDER", "LLM_EMBED_PROVIDER", "LLM_MODEL", "LLM_MODEL_PATH", "LLM_MODELS"):
        monkeypatch.delenv(name, raising=False)
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert (s.provider, s.embed_provider) == ("llamacpp", "onnx")
    assert s.model_specs[0].path is None  # → the packaged Gemma 3 270M


def test_render_prompt_is_a_plain_completion_prompt() -> None:
    msgs = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi?"),
        ChatMessage(role="assistant", content="Hello."),
        ChatMessage(role="user", content="What is 2+2?"),
    ]
    assert render_prompt(msgs) == "Be brief.\nQ: Hi?\nA: Hello.\nQ: What is 2+2?\nA:"
    grounded = render_prompt(msgs[-1:], grounded=True)
    # Grounded prompts start with one worked example (a base model copies a placeholder otherwise).
    assert grounded.startswith("Example.\n") and '"chunk_id": "example:1"' in grounded
    assert grounded.endswith("\n\nQ: What is 2+2?\nA (JSON):")


@pytest.mark.parametrize(
    ("pieces", "stops", "text", "hit"),
    [
        (["Par", "is is", " nice\n", "Q: next"], [], "Paris is nice", "\nQ:"),
        (["one, t", "wo, th", "ree"], ["two"], "one, ", "two"),
        (["a\n", "\nb"], [], "a", "\n\n"),
        (["no stop ", "here"], ["zzz"], "no stop here", None),
        (["ends with \n"], [], "ends with \n", None),  # a held-back tail comes out at the end
    ],
)
def test_stop_scanner(pieces: list[str], stops: list[str], text: str, hit: str | None) -> None:
    scanner = StopScanner(stops)
    out = ""
    for p in pieces:
        out += scanner.feed(p)
        if scanner.hit:
            break
    if scanner.hit is None:
        out += scanner.flush()
    assert (out, scanner.hit) == (text, hit)


def test_stop_scanner_holds_back_a_possible_stop_prefix() -> None:
    scanner = StopScanner(["END"])
    assert scanner.feed("abc E") == "abc "
    assert scanner.feed("N") == ""
    assert scanner.feed("x") == "ENx"


@pytest.mark.parametrize("max_tokens", [GROUNDED_MIN_TOKENS, 30, 64, 100, 512])
def test_budget_leaves_room_for_the_json_to_close(max_tokens: int) -> None:
    schema = budget_schema(json_schema(["a", "b"]), max_tokens)
    cites = schema["properties"]["citations"]
    answer_len = schema["properties"]["answer"]["maxLength"]
    assert answer_len >= 1 and cites["maxItems"] >= 1
    assert answer_len + JSON_OVERHEAD_TOKENS + CITATION_TOKENS * cites["maxItems"] <= max_tokens
    assert cites["items"]["properties"]["chunk_id"]["enum"] == ["a", "b"]


@pytest.mark.parametrize("max_tokens", [1, 16, GROUNDED_MIN_TOKENS - 1])
def test_a_budget_too_small_for_the_json_to_close_is_refused(max_tokens: int) -> None:
    with pytest.raises(CairnError) as info:
        budget_schema(json_schema(["a", "b"]), max_tokens)
    assert info.value.reason_code == ReasonCode.TOKEN_LIMIT and str(GROUNDED_MIN_TOKENS) in info.value.message


def test_grammar_bars_control_characters_and_keeps_the_enum() -> None:
    gbnf = json_grammar(json_schema(["doc#1", "doc#2"]))
    char = next(line for line in gbnf.splitlines() if line.startswith("char ::= "))
    assert r"\x00-\x1F" in char
    assert '"\\"doc#1\\""' in gbnf and '"\\"doc#2\\""' in gbnf


def test_memory_guard(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"\0" * (3 << 20))
    assert check_memory(f, limit_mb=10, overhead_mb=2) == pytest.approx(5)
    with pytest.raises(CairnError) as info:
        check_memory(f, limit_mb=4, overhead_mb=2)
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED
    assert "LLM_MEMORY_LIMIT_MB=4" in info.value.message


def _counter_producer(produced: list[int], started: threading.Event) -> Callable[..., None]:
    def produce(emit: Callable[[int], None], cancel: threading.Event) -> None:
        started.set()
        for i in range(10_000):
            if cancel.is_set():
                return
            produced.append(i)
            emit(i)
            time.sleep(0.002)  # a "token"

    return produce


async def test_thread_bridge_streams_and_stops_when_the_consumer_leaves() -> None:
    produced: list[int] = []
    started = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        agen = stream_in_thread(pool, _counter_producer(produced, started))
        got = [await anext(agen) for _ in range(5)]
        await agen.aclose()
        n = len(produced)
        await asyncio.sleep(0.1)
        assert got == [0, 1, 2, 3, 4]
        assert len(produced) <= n + 1  # at most the token in flight when the consumer left
        assert len(produced) < 100


async def test_thread_bridge_stops_on_cancellation_and_reraises_errors() -> None:
    produced: list[int] = []
    started = threading.Event()
    with ThreadPoolExecutor(1) as pool:

        async def consume() -> None:
            async for _ in stream_in_thread(pool, _counter_producer(produced, started)):
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(started.wait, 5)
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        n = len(produced)
        await asyncio.sleep(0.1)
        assert len(produced) <= n + 1 and n < 1000

        def boom(emit: Callable[[int], None], cancel: threading.Event) -> None:
            emit(1)
            raise ValueError("broken model")

        agen = stream_in_thread(pool, boom)
        assert await anext(agen) == 1
        with pytest.raises(ValueError, match="broken model"):
            await anext(agen)


def test_budget_schema_does_not_change_its_input() -> None:
    schema = json_schema(["x"])
    before = json.dumps(schema, sort_keys=True)
    budget_schema(schema, 32)
    assert json.dumps(schema, sort_keys=True) == before


def test_extractive_prompt_numbers_sentences_best_first_and_asks_for_one() -> None:
    from cairn_core import ContextChunk
    from cairn_gateway.citations import check_grounded
    from cairn_gateway.in_process import extractive

    chunks = [
        ContextChunk(chunk_id="a:0", title="Mileage", text="The rate is 0.42 euros. Claims are monthly."),
        ContextChunk(chunk_id="b:0", title=None, text="Parking is free."),
    ]
    numbered = extractive.number_sentences(chunks)
    assert [(s.chunk_id, s.text) for s in numbered] == [
        ("a:0", "The rate is 0.42 euros."),
        ("a:0", "Claims are monthly."),
        ("b:0", "Parking is free."),
    ]
    assert len(extractive.number_sentences(chunks * 5)) == extractive.MAX_SENTENCES
    prompt = extractive.render(numbered, "What is the rate?")
    # The fixed part comes first, so llama.cpp can keep its KV cache between requests.
    assert prompt.startswith(extractive.PREFIX)
    assert prompt.endswith("[3] Parking is free.\nQuestion: What is the rate?\nAnswer: [")
    # What the provider writes is the contract's citation JSON, cited to the sentence's chunk.
    grounded = check_grounded(extractive.as_grounded_json(extractive.quote(numbered, 2, 2)), chunks)
    assert grounded.answer == "Parking is free." and [c.chunk_id for c in grounded.citations] == ["b:0"]
    # A second sentence is quoted only from the chosen sentence's own chunk.
    two = extractive.quote(numbered, 1, 2)
    assert [s.text for s in two] == ["Claims are monthly.", "The rate is 0.42 euros."]
    assert [s.text for s in extractive.quote(numbered, 1, 1)] == ["Claims are monthly."]


def test_a_quoted_grammar_line_is_not_glued_to_the_sentence_after_it() -> None:
    from cairn_core import ContextChunk
    from cairn_gateway.citations import check_grounded
    from cairn_gateway.in_process import extractive

    # Two sentences of the Python Language Reference (pydoc_data.topics["floating"], PSF licence).
    grammar = 'exponent ::= ("e" | "E") ["+" | "-"] digitpart'
    note = "Note that the integer and exponent parts are always interpreted using radix 10."
    chunks = [
        ContextChunk(chunk_id="floating:0", title="Floating point literals", text=f"{grammar}\n\n{note}")
    ]
    numbered = extractive.number_sentences(chunks)
    assert [s.text for s in numbered] == [grammar, note]
    answer = check_grounded(extractive.as_grounded_json(extractive.quote(numbered, 0, 2)), chunks).answer
    assert answer == f"{grammar}\n\n{note}"


def test_a_chosen_lead_in_is_quoted_with_the_sentence_after_it() -> None:
    from cairn_core import ContextChunk
    from cairn_gateway.in_process import extractive

    # pydoc_data.topics["debugger"] (PSF licence): QS sends a lead-in's follower right behind it, even when
    # another sentence of the chunk scored higher.
    chunks = [
        ContextChunk(
            chunk_id="debugger:3",
            title="pdb",
            text="The module defines the following functions.\n\nThe typical usage to inspect a crashed "
            "program is:\n\n>>> pdb.pm()",
        )
    ]
    numbered = extractive.number_sentences(chunks)
    lead = [s.text for s in extractive.quote(numbered, 1, 2)]
    assert lead == ["The typical usage to inspect a crashed program is:", ">>> pdb.pm()"]
    # Any other choice keeps the order given.
    assert [s.text for s in extractive.quote(numbered, 2, 2)][1] == numbered[0].text


class _Tokens(list[int]):
    def __init__(self, text: str, ids: range) -> None:
        super().__init__(ids)
        self.text = text


class _RecordingLlama:
    """Stands in for `llama_cpp.Llama`: records the prompt and grammar it is given, answers two pieces."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.calls: list[dict[str, Any]] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        # The provider hands create_completion these tokens; they remember their text for the assertions.
        return _Tokens(text.decode(), range(len(text.split()) + int(add_bos)))

    def create_completion(self, prompt: Any, **kw: Any) -> Iterator[dict[str, Any]]:
        self.calls.append({"prompt": getattr(prompt, "text", prompt), **kw})
        for piece in self.pieces:
            yield {"choices": [{"text": piece, "finish_reason": None}]}


def _run_llamacpp(req: ProviderRequest, pieces: list[str]) -> tuple[str, dict[str, Any]]:
    from cairn_gateway.providers.llamacpp import LlamaCppProvider

    provider = LlamaCppProvider(ModelSpec(alias="m", provider="llamacpp"), GatewaySettings(_env_file=None))  # type: ignore[call-arg]
    provider.fit_threads = lambda llm: None  # type: ignore[method-assign]
    llm = _RecordingLlama(pieces)
    out: list[ProviderChunk] = []
    generation.generate(provider, llm, req, out.append, threading.Event())
    return "".join(c.text for c in out), llm.calls[0]


def test_a_raw_prompt_reaches_llama_cpp_as_is_and_only_the_callers_stops_end_it() -> None:
    req = ProviderRequest(
        messages=[ChatMessage(role="user", content="Roses are red,\n")],
        max_tokens=16,
        temperature=0.0,
        stop=["END"],
        raw=True,
    )
    text, call = _run_llamacpp(req, ["violets\n\n", "Q: are blue", " END more"])
    assert call["prompt"] == "Roses are red,\n"  # no Q:/A: wrapping
    assert text == "violets\n\nQ: are blue "  # the Q/A format's stops do not apply to a raw prompt
    chat = ProviderRequest(messages=req.messages, max_tokens=16, temperature=0.0)
    text, call = _run_llamacpp(chat, ["violets\n\n", "more"])
    assert call["prompt"] == "Q: Roses are red,\nA:" and text == "violets"


def test_response_format_json_becomes_a_grammar() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    req = ProviderRequest(
        messages=[ChatMessage(role="user", content="Capital of France?")],
        max_tokens=16,
        temperature=0.0,
        stop=["}"],
        openai={"response_format": fmt},
    )
    text, call = _run_llamacpp(req, ['{"city":', ' "Paris"}\n\n'])
    assert call["grammar"] is not None and text == '{"city": "Paris"}\n\n'  # not cut by stops: JSON ends it
    assert response_schema({"type": "json_object"}) == {"type": "object"}
    assert response_schema(fmt) == schema and response_schema({"type": "text"}) is None


# --- prompt formats: the GGUF's own chat template, or the base format ------------------------------------

# Gemma's own chat template (strings only): the system text leads the first user turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for m in loop_messages -%}"
    "{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' }}"
    "{{- (prefix if loop.first else '') + (m['content'] | trim) + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


@pytest.mark.parametrize(
    ("setting", "metadata", "expected"),
    [
        ("auto", {"tokenizer.chat_template": GEMMA_TEMPLATE}, "chat_template"),
        ("auto", {}, "base"),
        ("auto", {"tokenizer.chat_template": "  "}, "base"),
        ("base", {"tokenizer.chat_template": GEMMA_TEMPLATE}, "base"),
        ("chat_template", {"tokenizer.chat_template": GEMMA_TEMPLATE}, "chat_template"),
    ],
)
def test_prompt_format_is_the_template_when_the_gguf_has_one(
    setting: str, metadata: dict[str, str], expected: str
) -> None:
    from cairn_gateway.in_process.chat_template import choose_format

    assert choose_format(setting, metadata, "m.gguf") == expected


def test_asking_for_a_template_the_gguf_lacks_is_refused() -> None:
    from cairn_gateway.in_process.chat_template import choose_format

    with pytest.raises(CairnError) as info:
        choose_format("chat_template", {}, "base.gguf")
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED and "base.gguf" in info.value.message


def test_chat_template_renders_gemma_turns_without_the_bos_text() -> None:
    from cairn_gateway.in_process.chat_template import ChatTemplate

    tpl = ChatTemplate(GEMMA_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    msgs = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi?"),
        ChatMessage(role="assistant", content="Hello."),
        ChatMessage(role="user", content="What is 2+2?"),
    ]
    # The tokenizer adds the bos token itself, so the text must not carry it a second time.
    assert tpl.render(msgs) == (
        "<start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_a_template_that_refuses_system_messages_gets_them_in_the_first_user_turn() -> None:
    from cairn_gateway.in_process.chat_template import ChatTemplate

    # A grounded request with the caller's own system message has two system messages: Gemma's template
    # takes only the first one, and its alternation check refuses the second.
    tpl = ChatTemplate(GEMMA_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    msgs = [
        ChatMessage(role="system", content="Sources: [a] x"),
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Q?"),
    ]
    assert tpl.render(msgs) == (
        "<start_of_turn>user\nSources: [a] x\n\nBe brief.\n\nQ?<end_of_turn>\n<start_of_turn>model\n"
    )
    with pytest.raises(CairnError) as info:  # two user turns in a row: no way to fix that for the template
        tpl.render([ChatMessage(role="user", content="a"), ChatMessage(role="user", content="b")])
    assert info.value.reason_code == ReasonCode.BAD_REQUEST and "alternate" in info.value.message


def test_a_template_that_does_not_parse_rejects_the_model() -> None:
    from cairn_gateway.in_process.chat_template import ChatTemplate

    with pytest.raises(CairnError) as info:
        ChatTemplate("{% for m in messages %}", bos_token="", eos_token="")
    assert info.value.reason_code == ReasonCode.MODEL_REJECTED


class _Tokenizer:
    """Stands in for `Llama`: records the text the provider hands to the tokenizer."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, bool]] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self.seen.append((text.decode(), add_bos, special))
        return [0] * len(text)


def _provider_with_template() -> LlamaCppProvider:
    from cairn_gateway.in_process.chat_template import ChatTemplate

    provider = LlamaCppProvider(ModelSpec(alias="m", provider="llamacpp"), GatewaySettings(_env_file=None))
    provider.template = ChatTemplate(GEMMA_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    provider.prompt_format = "chat_template"
    return provider


def test_template_model_templates_messages_and_json_grounded_prompts_but_not_raw_prompts() -> None:
    from cairn_gateway.providers.base import ProviderRequest

    provider = _provider_with_template()
    llm = _Tokenizer()
    user = [ChatMessage(role="user", content="Hi?")]
    chat = ProviderRequest(messages=user, max_tokens=8, temperature=0)
    raw = ProviderRequest(messages=user, max_tokens=8, temperature=0, prompt="Hi?")
    grounded = ProviderRequest(
        messages=[ChatMessage(role="system", content="Sources: [a] x"), *user],
        max_tokens=8,
        temperature=0,
        json_schema=json_schema(["a"]),
        prompt="Hi?",
    )
    assert generation.prompt_tokens(provider, llm, chat, False)[1] == ()
    generation.prompt_tokens(provider, llm, raw, False)
    generation.prompt_tokens(provider, llm, grounded, True)
    texts = [text for text, _, _ in llm.seen]
    assert texts == [
        "<start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n",
        "Hi?",
        "<start_of_turn>user\nSources: [a] x\n\nHi?<end_of_turn>\n<start_of_turn>model\n",
    ]
    # One bos, from the tokenizer; `<start_of_turn>` is parsed as the special token it is.
    assert {(add_bos, special) for _, add_bos, special in llm.seen} == {(True, True)}


def test_base_model_keeps_the_q_a_format_and_its_stops() -> None:
    from cairn_gateway.in_process.base_prompt import FORMAT_STOPS
    from cairn_gateway.providers.base import ProviderRequest

    provider = LlamaCppProvider(ModelSpec(alias="m", provider="llamacpp"), GatewaySettings(_env_file=None))
    llm = _Tokenizer()
    req = ProviderRequest(messages=[ChatMessage(role="user", content="Hi?")], max_tokens=8, temperature=0)
    assert generation.prompt_tokens(provider, llm, req, False)[1] == FORMAT_STOPS
    assert llm.seen[0][0] == "Q: Hi?\nA:"


def test_stop_scanner_without_format_stops_keeps_blank_lines() -> None:
    scanner = StopScanner([], format_stops=())
    assert scanner.feed("One.\n\nTwo.\nQ: x") + scanner.flush() == "One.\n\nTwo.\nQ: x"
    assert scanner.hit is None


# --- GPU offload: LLM_GPU_LAYERS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "gpu", "layers"),
    [
        ("auto", True, -1),  # every layer
        ("auto", False, 0),
        ("none", True, 0),
        ("0", True, 0),
        ("12", True, 12),
        ("all", True, -1),
        ("-1", True, -1),
        ("12", False, 0),  # a CPU-only build cannot: nothing is reported as offloaded
    ],
)
def test_gpu_layers_decision(setting: str, gpu: bool, layers: int) -> None:
    from cairn_gateway.in_process.offload import n_gpu_layers

    assert n_gpu_layers(setting, lambda: gpu) == layers


def test_auto_follows_what_this_llama_cpp_build_supports(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp
    from cairn_gateway.in_process.offload import n_gpu_layers, supports_gpu

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert n_gpu_layers("auto", supports_gpu) == -1
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    assert n_gpu_layers("auto", supports_gpu) == 0


def test_gpu_layers_setting_is_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("LLM_GPU_LAYERS", "None")
    assert GatewaySettings(_env_file=None).gpu_layers == "0"
    monkeypatch.setenv("LLM_GPU_LAYERS", "lots")
    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None)
    monkeypatch.setenv("LLM_GPU_LAYERS", "-2")
    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None)


def test_placement_counts_layers_as_llama_cpp_does() -> None:
    from cairn_gateway.in_process.offload import Placement

    meta = {"general.architecture": "gemma3", "gemma3.block_count": "18"}
    # 18 blocks and the output layer: llama.cpp's "offloaded 19/19 layers".
    assert Placement.of(-1, meta) == Placement(gpu_layers=19, total_layers=19)
    assert Placement.of(-1, meta).device == "gpu"
    assert Placement.of(100, meta).gpu_layers == 19
    assert Placement.of(0, meta).device == "cpu"

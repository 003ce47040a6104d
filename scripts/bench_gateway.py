"""Gateway overhead benchmark: the fake upstream called directly, through a bare relay and through the gateway,
in one run.

Prints p50/p99 latency, time to first token, requests/s at concurrency 16 and 64, and CPU ms per request of the
process in the middle. Ratios compare with the direct numbers measured in the same run, on the same machine, at
the same moment. The bare relay (`cairn_testing.floor_relay`: the gateway's server and HTTP client, no
features) is the floor: what any Python relay costs here, so the gateway's own cost is the gap to it.
Run: `make bench` (all benchmarks) or `.venv/bin/python scripts/bench_gateway.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
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
# A model-like upstream: 16 tokens, 20 ms apart (50 tokens/s per stream, what Gemma 3 270M does on this
# machine in total), streamed. Unlike the instant upstream, this leaves CPU for the relay, as a real model does.
PACED = {**BODY, "messages": [{"role": "user", "content": "bench [[tokens:16]] [[delay_ms:20]]"}]}


@dataclass
class Result:
    latencies: list[float]
    ttfts: list[float]
    rps: float

    def p(self, q: float, data: list[float] | None = None) -> float:
        data = sorted(data if data is not None else self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _one(
    session: aiohttp.ClientSession, url: str, stream: bool, paced: bool = False
) -> tuple[float, float]:
    body = {**(PACED if paced else BODY), "stream": stream}
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


async def load(url: str, concurrency: int, total: int, stream: bool, paced: bool = False) -> Result:
    latencies: list[float] = []
    ttfts: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(20, total)):  # warm up code paths
            await _one(session, url, stream, paced)
        # Open every connection before the clock starts: otherwise the first request of each of the 64 clients
        # measures a burst of 64 connection setups on each hop (it was most of the paced p90).
        await asyncio.gather(*[_one(session, url, stream, paced) for _ in range(concurrency)])
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                lat, ttft = await _one(session, url, stream, paced)
                latencies.append(lat)
                if stream:
                    ttfts.append(ttft)

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return Result(latencies, ttfts, total / elapsed)


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


async def measure(url: str, n: int, pid: int | None = None) -> dict[str, float]:
    seq = await load(url, 1, n, stream=False)
    seq_stream = await load(url, 1, n, stream=True)
    out = {
        "p50": seq.p(0.5),
        "p99": seq.p(0.99),
        "ttft_p50": seq_stream.p(0.5, seq_stream.ttfts),
        "ttft_p99": seq_stream.p(0.99, seq_stream.ttfts),
    }
    for c in (16, 64):
        cpu0 = cpu_seconds(pid) if pid else 0.0
        res = await load(url, c, n * 4, stream=False)
        out[f"rps{c}"] = res.rps
        if pid and c == 64:
            out["cpu_ms"] = (cpu_seconds(pid) - cpu0) * 1000 / (n * 4 + 20)
    paced = await load(url, 64, n * 2, stream=True, paced=True)
    out["paced_rps64"], out["paced_ttft_p50"] = paced.rps, paced.p(0.5, paced.ttfts)
    out["paced_p50"] = paced.p(0.5)
    return out


def table(direct: dict[str, float], via: dict[str, dict[str, float]]) -> str:
    rows = [
        "| path | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | req/s c=16 | req/s c=64 | relay CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows.append(
        f"| direct to upstream | {direct['p50']:.2f} | {direct['p99']:.2f} | {direct['ttft_p50']:.2f} | "
        f"{direct['ttft_p99']:.2f} | {direct['rps16']:.0f} | {direct['rps64']:.0f} | – |"
    )
    for name, r in via.items():
        rows.append(
            f"| {name} | {r['p50']:.2f} (+{r['p50'] - direct['p50']:.2f}) | {r['p99']:.2f} | "
            f"{r['ttft_p50']:.2f} (+{r['ttft_p50'] - direct['ttft_p50']:.2f}) | {r['ttft_p99']:.2f} | "
            f"{r['rps16']:.0f} ({r['rps16'] / direct['rps16']:.2f}×) | {r['rps64']:.0f} "
            f"({r['rps64'] / direct['rps64']:.2f}×) | {r['cpu_ms']:.2f} |"
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
            f"| {name} | {r['paced_rps64']:.0f} ({r['paced_rps64'] / direct['paced_rps64']:.2f}×) "
            f"| {r['paced_p50']:.1f} | {r['paced_ttft_p50']:.2f} |"
        )
    return "\n".join(rows)


async def main(quick: bool) -> None:
    # Rounds alternate the three paths, and each number is the median over rounds: a small VM's speed drifts
    # within minutes, and interleaving puts every path in the same minutes.
    n, rounds = (100, 1) if quick else (200, 5)
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
    print("### LLM gateway overhead (fake upstream, /v1/chat/completions, 16 tokens)\n")
    print(table(direct, med))
    floor, gw = med["bare relay (floor)"], med["via gateway"]
    print(
        f"\ngateway over the bare relay: CPU +{gw['cpu_ms'] - floor['cpu_ms']:.2f} ms/req, "
        f"p50 +{gw['p50'] - floor['p50']:.2f} ms, TTFT +{gw['ttft_p50'] - floor['ttft_p50']:.2f} ms, "
        f"c=64 throughput {gw['rps64'] / floor['rps64']:.2f}× the relay's"
    )
    spread = {
        name: {k: [round(r[k], 2) for r in rs] for k in ("p50", "ttft_p50", "rps64", "cpu_ms") if k in rs[0]}
        for name, rs in runs.items()
    }
    print("\nper round:", json.dumps(spread))
    print(
        f"\nmachine: {os.cpu_count()} cores; {rounds} interleaved rounds, medians; per round and path "
        f"n={n} sequential, {n * 4} per concurrency level"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))

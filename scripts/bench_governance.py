"""Governance benchmark: what the audit record (and the default policy) adds to one chat.

Two QS processes on the same toy gateway, each with its own SQLite file and the same documents, the answer
cache off, default settings otherwise: one with the audit log on (the default), one with `QS_AUDIT_ENABLED=false`.
Both run the shipped default policy. Chats (non-stream, one at a time, the same client) alternate between the
two, so load from elsewhere on the machine falls on both alike; the difference of the medians is what the
audit write adds to a chat. QS's own `cairn_qs_audit_write_seconds` gives the write's time from the inside.

Target (issue 13): the audit record adds at most 2 ms to a chat.

Run: `make bench` or `.venv/bin/python scripts/bench_governance.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from cairn_testing import ServerProcess, start_server

DOCS = [
    {
        "id": f"doc{i}",
        "title": f"Policy {i}",
        "text": f"Team {i} gets {20 + i} days of paid leave per year. Requests go to the lead of team {i} "
        f"two weeks ahead. The office of team {i} opens at {7 + i % 3}am.",
    }
    for i in range(20)
]


def start_gateway() -> ServerProcess:
    env = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": "toy",
        "LLM_EMBED_PROVIDER": "toy",
        "LLM_LOG_LEVEL": "WARNING",
    }
    return start_server("bench-gateway", ["cairn_gateway"], env=env, health_path="/readyz")


def start_qs(gw: ServerProcess, db: Path, audit: bool) -> ServerProcess:
    env = {
        "QS_PORT": "{port}",
        "QS_GATEWAY_URL": gw.url,
        "QS_DB_PATH": str(db),
        "QS_LOG_LEVEL": "WARNING",
        "QS_CACHE_SIZE": "0",  # every chat reaches the model and writes its record
        "QS_MIN_EVIDENCE": "-1",  # calibrated on MiniLM, not on the toy embedder
        "QS_ANSWER_EVIDENCE": "-1",
        "QS_AUDIT_ENABLED": str(audit).lower(),
    }
    return start_server("bench-query", ["cairn_query"], env=env, health_path="/readyz")


def write_seconds(qs: ServerProcess) -> tuple[float, float]:
    total = count = 0.0
    for line in httpx.get(f"{qs.url}/metrics").text.splitlines():
        if line.startswith("cairn_qs_audit_write_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("cairn_qs_audit_write_seconds_count"):
            count = float(line.split()[-1])
    return total, count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 100 if args.quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        gw = start_gateway()
        on = start_qs(gw, Path(tmp) / "on.sqlite3", audit=True)
        off = start_qs(gw, Path(tmp) / "off.sqlite3", audit=False)
        try:
            with httpx.Client(timeout=30) as client:
                for qs in (on, off):
                    for doc in DOCS:
                        client.post(f"{qs.url}/v1/documents", json=doc).raise_for_status()
                times: dict[str, list[float]] = {"on": [], "off": []}
                for i in range(rounds + 20):
                    question = f"How many days of paid leave does team {i % 20} get?"
                    for name, qs in (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on)):
                        started = time.perf_counter()
                        resp = client.post(f"{qs.url}/v1/chat", json={"query": question})
                        elapsed = time.perf_counter() - started
                        assert resp.json()["status"] == "ok", resp.text
                        if i >= 20:  # warm-up excluded
                            times[name].append(elapsed)
            total, count = write_seconds(on)
        finally:
            for srv in (off, on, gw):
                srv.stop()
    p50_on, p50_off = (statistics.median(times[k]) * 1000 for k in ("on", "off"))
    added = p50_on - p50_off
    inside = total / count * 1000 if count else float("nan")
    print(f"chats per side: {rounds} (alternating, non-stream, cache off, default policy, toy gateway)")
    print(f"chat p50 with the audit log:    {p50_on:7.2f} ms")
    print(f"chat p50 without it:            {p50_off:7.2f} ms")
    print(
        f"added by the audit record:      {added:+7.2f} ms   (target <= 2 ms: {'met' if added <= 2 else 'not met'})"
    )
    print(f"audit write inside QS (mean):   {inside:7.3f} ms over {count:.0f} writes")
    if added < 0:
        print("(negative: the difference is below what this method resolves on this machine; the write's own")
        print(" time inside QS is the better measure of its cost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The model worker process: crashes end requests with MODEL_CRASHED, never the gateway; the worker comes back.

Real processes throughout: a gateway, its worker (`in_process/worker_main.py`) running the scripted engine of
`scripted_engine.py` (tokens on a clock instead of llama.cpp), and real signals. The same paths with the real
model are in test_llamacpp.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_testing import ServerProcess, wait_for

from .conftest import sse, start_gateway

ENGINE = "scripted_engine:ScriptedEngine"
HERE = str(Path(__file__).parent)


def start(tmp_path: Path, health_path: str = "/readyz", **env: str) -> ServerProcess:
    defaults = {
        "LLM_PROVIDER": ENGINE,
        "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "LLM_MODEL_CACHE_DIR": str(tmp_path),  # the probe's finding is kept here, per test
        "LLM_WORKER_RESTART_MAX_S": "1",
        "LLM_FIRST_TOKEN_TIMEOUT_MS": "5000",
        "LLM_IDLE_TIMEOUT_MS": "5000",
        "LLM_TIMEOUT_MS": "20000",
    }
    return start_gateway(None, name="gateway-worker", health_path=health_path, **{**defaults, **env})


def model(gw: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/v1/models", timeout=10).json()["data"][0]


def crashes(gw: ServerProcess, phase: str) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("cairn_gateway_model_crashes_total{") and f'phase="{phase}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_worker_killed_mid_stream_ends_the_stream_with_model_crashed_and_comes_back(tmp_path: Path) -> None:
    gw = start(tmp_path)
    try:
        first = model(gw)
        pid = first["worker_pid"]
        assert first["isolation"] == "worker" and pid and pid != gw.proc.pid
        body = {"prompt": "go", "max_tokens": 200, "stream": True}
        got: list[bytes] = []
        with httpx.stream("POST", f"{gw.url}/v1/generate", json=body, timeout=30) as resp:
            assert resp.status_code == 200
            for raw in resp.iter_raw():
                got.append(raw)
                if b"t3 " in b"".join(got) and pid is not None:
                    os.kill(pid, signal.SIGSEGV)
                    pid = None
        events = sse(b"".join(got).decode())
        names = [name for name, _ in events]
        assert "delta" in names and names[-2:] == ["error", "done"], names
        assert events[-2][1]["reason_code"] == "MODEL_CRASHED" and "SIGSEGV" in events[-2][1]["message"]
        assert events[-1][1]["reason_code"] == "MODEL_CRASHED"
        assert gw.proc.poll() is None  # the gateway lives on
        assert crashes(gw, "serving") == 1
        # Restarted by itself: ready again, a new process, and it answers.
        again = wait_for(lambda: model(gw)["state"] == "loaded" and model(gw), "the restarted worker", 20)
        assert again["worker_pid"] not in (None, first["worker_pid"]) and again["worker_restarts"] == 1
        ok = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "go", "max_tokens": 3}, timeout=30).json()
        assert ok["status"] == "ok" and ok["text"] == "t0 t1 t2 ", ok
        assert httpx.get(f"{gw.url}/readyz", timeout=5).json()["status"] == "ready"
    finally:
        gw.stop()


def test_requests_while_the_worker_is_down_get_the_fallback_chain_with_a_reason(tmp_path: Path) -> None:
    gw = start(tmp_path, LLM_FALLBACK_PROVIDERS="sources", LLM_WORKER_RESTART_MAX_S="3")
    try:
        pid = model(gw)["worker_pid"]
        result: dict[str, Any] = {}

        def ask() -> None:
            body = {
                "prompt": "When does the library open?",
                "max_tokens": 100,
                "citations_required": True,
                "context_chunks": [{"chunk_id": "c1", "text": "The library opens at 9 am on weekdays."}],
            }
            result.update(httpx.post(f"{gw.url}/v1/generate", json=body, timeout=30).json())

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.5)  # mid-answer (100 tokens take 2 s)
        os.kill(pid, signal.SIGKILL)
        asker.join(30)
        # The answer that was being written is lost with the process; the request is not: the chain answers.
        assert result.get("status") == "fallback" and result["reason_code"] == "MODEL_CRASHED", result
        assert result["provider"] == "sources" and "9 am" in result["answer"]
        ready = httpx.get(f"{gw.url}/readyz", timeout=5).json()
        assert ready["status"] in ("degraded", "ready")  # degraded until the restart (0.5 s after the crash)
        wait_for(lambda: httpx.get(f"{gw.url}/readyz", timeout=5).json()["status"] == "ready", "ready", 20)
    finally:
        gw.stop()


def test_a_probe_that_crashes_with_extra_buffer_types_loads_the_model_without_them(tmp_path: Path) -> None:
    gw = start(tmp_path, LLM_SCRIPTED_PROBE_CRASH="extra_bufts")
    try:
        info = model(gw)
        assert info["state"] == "loaded" and info["extra_bufts"] is False
        assert "SIGSEGV" in info["notice"] and "LLM_EXTRA_BUFTS" in info["notice"]
        assert crashes(gw, "probe") == 1
        ready = httpx.get(f"{gw.url}/readyz", timeout=5).json()
        assert ready["status"] == "ready" and "SIGSEGV" in ready["notice"]
        ok = httpx.post(f"{gw.url}/v1/generate", json={"prompt": "go", "max_tokens": 2}, timeout=30).json()
        assert ok["status"] == "ok"
    finally:
        gw.stop()
    # The finding is kept: the next start loads the safe way at once, without a crash.
    again = start(tmp_path, LLM_SCRIPTED_PROBE_CRASH="extra_bufts")
    try:
        assert model(again)["extra_bufts"] is False and crashes(again, "probe") == 0
    finally:
        again.stop()


def test_forcing_extra_buffer_types_on_a_crashing_cpu_degrades_with_the_reason(tmp_path: Path) -> None:
    gw = start(
        tmp_path,
        "/healthz",
        LLM_SCRIPTED_PROBE_CRASH="extra_bufts",
        LLM_EXTRA_BUFTS="on",
        LLM_LOAD_RETRY_S="60",
    )
    try:
        ready = httpx.get(f"{gw.url}/readyz", timeout=5).json()
        assert ready["status"] == "unavailable" and ready["reason_code"] == "MODEL_CRASHED", ready
        assert "SIGSEGV" in ready["message"]
        assert gw.proc.poll() is None
    finally:
        gw.stop()


def test_a_gateway_killed_takes_its_worker_with_it(tmp_path: Path) -> None:
    gw = start(tmp_path)
    pid = model(gw)["worker_pid"]
    gw.proc.kill()
    gw.proc.wait(10)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, "the orphaned worker to exit", 10)
    gw.stop()


@pytest.mark.parametrize("isolation", ["none"])
def test_isolation_none_keeps_the_model_in_the_gateway_process(tmp_path: Path, isolation: str) -> None:
    gw = start(tmp_path, LLM_MODEL_ISOLATION=isolation)
    try:
        info = model(gw)
        assert info.get("isolation") is None and info["pid"] == gw.proc.pid
    finally:
        gw.stop()

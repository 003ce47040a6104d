"""`make up` supervises: each service killed with SIGKILL under load comes back by itself, and no document
whose upload was acknowledged is lost. The real scripts/stack.sh, on free ports and a run directory of its own,
with the toy model (the model worker's own crashes are in services/gateway/tests/test_model_worker.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_testing import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "query", "bff")


def stack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/stack.sh", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[dict[str, Any]]:
    run = tmp_path / "run"
    ports = {"gateway": free_port(), "query": free_port(), "bff": free_port()}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "QS_", "BFF_", "CAIRN_"))}
    env = {
        **inherited,
        "CAIRN_RUN_DIR": str(run),
        "LLM_PORT": str(ports["gateway"]),
        "QS_PORT": str(ports["query"]),
        "BFF_PORT": str(ports["bff"]),
        "LLM_PROVIDER": "toy",
        "LLM_EMBED_PROVIDER": "toy",
        "QS_MIN_EVIDENCE": "-1",  # calibrated on MiniLM, not on the toy embedder
        "QS_ANSWER_EVIDENCE": "-1",
        "BFF_RATE_LIMIT_PER_MINUTE": "0",
        "BFF_MAX_INFLIGHT_PER_CLIENT": "0",
        "CAIRN_RESTART_MAX_S": "1",
    }
    up = stack("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "run": run, "ports": ports, "bff": f"http://127.0.0.1:{ports['bff']}"}
    finally:
        stack("down", env)


def state(run: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((run / f"{name}.state.json").read_text()))


def healthy(port: int, path: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_each_service_killed_under_load_comes_back_and_no_acknowledged_document_is_lost(
    supervised: dict[str, Any],
) -> None:
    run, bff = supervised["run"], supervised["bff"]
    acknowledged: list[str] = []
    stop = threading.Event()

    def upload() -> None:  # the load: one document after another, as a user's uploads would come
        n = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                doc = {"id": f"doc-{n}", "title": f"Note {n}", "text": f"Note {n}: the tide rose {n} cm."}
                try:
                    r = client.post(f"{bff}/api/documents", json=doc)
                except httpx.HTTPError:
                    r = None  # refused or cut while a service restarts: not acknowledged, may be retried
                if r is not None and r.status_code in (200, 201):
                    acknowledged.append(doc["id"])
                n += 1

    loader = threading.Thread(target=upload)
    loader.start()
    try:
        for name in SERVICES:
            wait_for(lambda: len(acknowledged) >= 3, "uploads before the kill", 30)
            before = len(acknowledged)
            child = state(run, name)["child_pid"]
            os.kill(child, signal.SIGKILL)
            wait_for(lambda n=name: state(run, n)["restarts"] == 1, f"{name} restarted", 30)
            port, path = supervised["ports"][name], "/readyz" if name == "gateway" else "/healthz"
            wait_for(lambda p=port, q=path: healthy(p, q), f"{name} healthy again", 60)
            assert state(run, name)["child_pid"] != child
            wait_for(lambda b=before: len(acknowledged) > b + 2, f"uploads after {name} came back", 30)
    finally:
        stop.set()
        loader.join(30)
    stored: set[str] = set()
    while True:  # every page of the list
        page = httpx.get(f"{bff}/api/documents", params={"limit": 1000, "offset": len(stored)}, timeout=10)
        assert page.status_code == 200, page.text
        stored |= {d["id"] for d in page.json()["documents"]}
        if len(stored) >= page.json()["total"]:
            break
    lost = [doc for doc in acknowledged if doc not in stored]
    assert not lost, f"{len(lost)} acknowledged uploads lost: {lost[:5]}"
    answer = httpx.post(f"{bff}/api/chat", json={"query": "How far did the tide rise in note 2?"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    status = stack("status", supervised["env"]).stdout
    for name in SERVICES:
        assert f"{name}  pid" in status and "restarted 1 time(s) (last: SIGKILL)" in status, status


def test_down_stops_the_supervisors_and_their_services(supervised: dict[str, Any]) -> None:
    run = supervised["run"]
    pids = [int((run / f"{n}.pid").read_text()) for n in SERVICES]
    pids += [state(run, n)["child_pid"] for n in SERVICES]
    down = stack("down", supervised["env"])
    assert down.returncode == 0, down.stdout + down.stderr

    def all_gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    wait_for(all_gone, "every supervisor and service to exit", 20)


def test_the_run_directory_and_what_it_holds_are_private(supervised: dict[str, Any]) -> None:
    run = supervised["run"]
    assert (run.stat().st_mode & 0o777) == 0o700
    for path in run.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"

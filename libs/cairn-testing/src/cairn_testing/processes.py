"""Start real server processes for integration tests and benchmarks, and stop them reliably."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that; fail the test saying `what` was
    awaited (and the last value seen) when it does not come within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {value!r})")
        time.sleep(interval_s)


def wait_http_ok(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | str | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            resp = httpx.get(url, timeout=2.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout_s}s: {last!r}")


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_server(
    name: str,
    module_args: list[str],
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    health_path: str = "/healthz",
    log_dir: Path | None = None,
    timeout_s: float = 60.0,
) -> ServerProcess:
    """Run `python -m <module_args>` with `env` on a free port (passed as the env var named by the caller)."""
    port = port or free_port()
    # The operator's internal token (a .env the Makefile exports) is not inherited: a test or benchmark decides
    # itself whether its services require one, and its clients know which.
    inherited = {k: v for k, v in os.environ.items() if k != "CAIRN_INTERNAL_TOKEN"}
    full_env = {**inherited, **(env or {})}
    full_env = {k: v.replace("{port}", str(port)) for k, v in full_env.items()}
    log_dir = log_dir or Path(os.environ.get("CAIRN_TEST_LOG_DIR", "/tmp/cairn-test-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    args = [sys.executable, "-m", *[a.replace("{port}", str(port)) for a in module_args]]
    # The child writes to its own copy of the descriptor; ours is closed at once (left open, every server a
    # test started held one more file until the garbage collector found it).
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(name, port, proc, log_path, env or {})
    try:
        wait_http_ok(f"{server.url}{health_path}", timeout_s, proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"{name} did not start; its log:\n{server.log_text()[-4000:]}") from None
    return server

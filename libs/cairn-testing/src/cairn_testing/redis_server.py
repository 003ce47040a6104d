"""A real redis-server for tests: on a free port, nothing written to disk, stopped by the caller.

Debian's `redis-server` is installed with apt-get when missing (as the browser tests install chromium), so
setup needs no new step and the tests never stand in a fake for the server they are about.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import free_port

REDIS_SERVER = "redis-server"


def ensure_redis_server() -> str:
    path = shutil.which(REDIS_SERVER)
    if path is not None:
        return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(f"{REDIS_SERVER} is missing; install it with: apt-get install -y redis-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, timeout=900, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(install, check=True, env=env, timeout=900)
    path = shutil.which(REDIS_SERVER)
    if path is None:
        raise RuntimeError(f"apt-get installed redis-server but {REDIS_SERVER} is not on PATH")
    return path


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(log_dir: Path | None = None, timeout_s: float = 20.0) -> RedisServer:
    """redis-server on loopback and a free port, with persistence off (no RDB, no AOF, no working files)."""
    binary = ensure_redis_server()
    port = free_port()
    log_dir = log_dir or Path(os.environ.get("CAIRN_TEST_LOG_DIR", "/tmp/cairn-test-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"redis-{port}.log"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no", "--dir", str(log_dir), "--dbfilename", f"redis-{port}.rdb"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    server = RedisServer(port, proc, log_path)
    deadline = time.monotonic() + timeout_s
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not start; its log:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return server

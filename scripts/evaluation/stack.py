"""A real gateway and a real query service on a fresh store, for one evaluation run."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cairn_testing import ServerProcess, start_server

from .sets import EvalSet


def start_gateway(provider: str, embed: str) -> ServerProcess:
    env = {
        "LLM_PORT": "{port}",
        "LLM_PROVIDER": provider,
        "LLM_EMBED_PROVIDER": embed,
        "LLM_TIMEOUT_MS": "180000",
        "LLM_FIRST_TOKEN_TIMEOUT_MS": "120000",
        "LLM_IDLE_TIMEOUT_MS": "60000",
        "LLM_QUEUE_SIZE": "64",
    }
    return start_server("eval-gateway", ["cairn_gateway"], env=env, health_path="/readyz", timeout_s=300)


def pick_embedder(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        start_gateway("toy", "onnx").stop()
        return "onnx"
    except RuntimeError:
        return "toy"


def provider_available(provider: str) -> bool:
    """The gateway's provider catalogue names it (a checkout of an older main may lack one)."""
    from cairn_gateway.providers.catalogue import PROVIDERS

    return provider in PROVIDERS


class LogTail:
    """What a server has logged since the last read (the QS log says how each answer was decided)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> str:
        if not self.path.exists():
            return ""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode("utf-8", "replace")


def start_query(gateway: ServerProcess, db_path: str, qs_env: dict[str, str]) -> ServerProcess:
    """QS with the answer cache off and long timeouts: a slow CPU must not turn answers into fallbacks."""
    env = {
        "QS_PORT": "{port}",
        "QS_GATEWAY_URL": gateway.url,
        "QS_DB_PATH": db_path,
        "QS_CACHE_SIZE": "0",
        "QS_GATEWAY_TIMEOUT_MS": "180000",
        "QS_FIRST_TOKEN_TIMEOUT_MS": "120000",
        "QS_EMBED_TIMEOUT_MS": "60000",
        "QS_PARSE_TIMEOUT_S": "60",
        **qs_env,
    }
    return start_server("eval-query", ["cairn_query"], env=env, health_path="/readyz")


@dataclass
class Stack:
    gateway: ServerProcess
    db_path: str
    qs: ServerProcess
    client: httpx.Client
    log: LogTail

    def restart_query(self, qs_env: dict[str, str]) -> None:
        """A new QS with other settings on the same store and gateway: no second ingest."""
        self.qs.stop()
        self.client.close()
        self.qs = start_query(self.gateway, self.db_path, qs_env)
        self.client = httpx.Client(base_url=self.qs.url, timeout=300)
        self.log = LogTail(self.qs.log_path)


@contextmanager
def running(provider: str, embed: str, qs_env: dict[str, str]) -> Iterator[Stack]:
    """A gateway and a QS on a fresh SQLite store, stopped on the way out."""
    gw = start_gateway(provider, embed)
    db_path = f"{tempfile.mkdtemp(prefix='cairn-eval-')}/eval.sqlite3"
    try:
        qs = start_query(gw, db_path, qs_env)
    except BaseException:
        gw.stop()
        raise
    stack = Stack(gw, db_path, qs, httpx.Client(base_url=qs.url, timeout=300), LogTail(qs.log_path))
    try:
        yield stack
    finally:
        stack.client.close()
        stack.qs.stop()
        gw.stop()


def ingest(client: httpx.Client, evalset: EvalSet) -> None:
    for row in evalset.rows:
        client.post("/v1/documents", json=row).raise_for_status()
    for doc_id, path in evalset.files.items():
        r = client.post("/v1/documents", data={"id": doc_id}, files={"file": (path.name, path.read_bytes())})
        if r.status_code >= 400:
            raise SystemExit(f"{path} was not stored: {r.status_code} {r.text[:300]}")

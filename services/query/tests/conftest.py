"""Real processes on loopback: gateways (toy, or openai_compat against the fake server) and query services."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_query.settings import QuerySettings
from cairn_query.store import Store, open_store
from cairn_testing import PostgresServer, ServerProcess, start_postgres, start_server
from cairn_testing import parse_sse as sse  # noqa: F401 - re-exported for the tests
from cairn_testing import start_gateway as _start_gateway

DOCS = [
    {
        "id": "leave",
        "title": "Leave policy",
        "url": "https://wiki.example/leave",
        "metadata": {"team": "hr"},
        "text": "Employees get 25 days of paid leave per year. Leave must be requested two weeks ahead.\n\n"
        "Unused leave expires at the end of March of the following year.",
    },
    {
        "id": "office",
        "title": "Office hours",
        "metadata": {"team": "facilities"},
        "text": "The office opens at 8am and closes at 6pm on weekdays. The building is closed on public holidays.",
    },
    {
        "id": "vpn",
        "title": "VPN setup",
        "collection": "it",
        "metadata": {"team": "it"},
        "text": "Install the WireGuard client and import the profile from the IT portal to connect to the VPN.",
    },
]

ADMIN_TOKEN = "qs-test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def start_gateway(fake: ServerProcess | None = None, **env: str) -> ServerProcess:
    """No fallback chain (cairn_testing's default): QS's own degradation is what these tests watch."""
    return _start_gateway(fake, **{"LLM_RETRY_MAX_WAIT_MS": "50", "LLM_CIRCUIT_FAILURES": "1000", **env})


def start_qs(gateway_url: str, db_path: Path, toy_embedder: bool = True, **env: str) -> ServerProcess:
    base = {
        "QS_PORT": "{port}",
        "QS_GATEWAY_URL": gateway_url,
        "QS_DB_PATH": str(db_path),
        "QS_RETRY_WAIT_MS": "10",
        "QS_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    if toy_embedder:
        # QS_MIN_EVIDENCE is calibrated on MiniLM's cosines; the toy embedder's hashed words are on another
        # scale, so behind it the answerability gate is off (retrieval's own NO_CONTEXT still holds).
        base["QS_MIN_EVIDENCE"] = base["QS_ANSWER_EVIDENCE"] = "-1"
    return start_server("query", ["cairn_query"], env={**base, **env}, health_path="/readyz")


def generations(gateway: ServerProcess) -> float:
    """How many /v1/generate requests the gateway has finished, whatever their outcome."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_gateway_requests_total{") and 'endpoint="generate"' in line
    )


@pytest.fixture(scope="module")
def toy_gateway() -> Iterator[ServerProcess]:
    srv = start_gateway()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def qs(toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("qs") / "qs.sqlite3")
    with httpx.Client(base_url=srv.url, timeout=20) as client:
        for doc in DOCS:
            assert client.post("/v1/documents", json=doc).status_code in (200, 201)
    yield srv
    srv.stop()


_databases = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 16 with pgvector (pgserver), shared by the session; tests take databases on it.
    Its data lives in its own temporary folder, not under pytest's basetemp: a concurrent pytest on the same
    machine prunes older basetemp folders, which would pull the data directory from under the server."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server: PostgresServer) -> str:
    """A new, empty database: tests don't see each other's rows."""
    return pg_server.url(f"t{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store location on each backend: a fresh SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "s.sqlite3")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture()
def store(target: str) -> Iterator[Store]:
    s = open_store(QuerySettings(store_url=target))
    yield s
    s.close()


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with `text` in Helvetica, written by hand so the test needs no PDF writer."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)

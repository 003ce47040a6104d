"""Schema-driven fuzzing (issue 10): schemathesis against each service's own `/openapi.json`, on real processes.

Every answer must be no 5xx, of a status and content type the document declares, and of the declared schema
(SSE streams event by event). The BFF is fuzzed in local mode from loopback, through to QS and the gateway,
with its rate limit off so the run reaches the upstreams instead of a 429. The seed is fixed so `make test`
is reproducible; `CAIRN_FUZZ_SEED` and `CAIRN_FUZZ_EXAMPLES` widen the search by hand (docs/operations.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import INTERNAL_TOKEN, Stack, start_stack

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "fuzz-admin"
INTERNAL = {"X-Cairn-Internal-Token": INTERNAL_TOKEN}
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = os.environ.get("CAIRN_FUZZ_SEED", "20240610")
# Per operation; the coverage phase adds its own boundary cases on top. About 10 s per service on 2 cores.
EXAMPLES = os.environ.get("CAIRN_FUZZ_EXAMPLES", "30")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
DOCS = [
    {
        "id": "leave",
        "title": "Leave policy",
        "metadata": {"team": "hr", "year": 2024},
        "text": "Employees get 25 days of paid leave per year. Leave must be requested two weeks ahead.",
    },
    {
        "id": "vpn",
        "title": "VPN setup",
        "collection": "it",
        "text": "Install the WireGuard client and import the profile from the IT portal to connect.",
    },
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "BFF_RATE_LIMIT_PER_MINUTE": "0",
        "LLM_ADMIN_TOKEN": ADMIN_TOKEN,
        "QS_ADMIN_TOKEN": ADMIN_TOKEN,
        # Sources the fuzzer creates are never run on a schedule: it checks the API, not random folders' sync.
        "QS_CONNECTORS_SCHEDULER": "false",
    }
    stack = start_stack(tmp_path_factory.mktemp("fuzz"), env)
    try:
        for doc in DOCS:
            resp = httpx.post(f"{stack.query.url}/v1/documents", json=doc, headers=INTERNAL, timeout=30)
            assert resp.status_code == 201
        yield stack
    finally:
        stack.stop()


def fuzz(base_url: str, cwd: Path, *extra: str) -> None:
    args = [
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        *extra,
    ]
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"schemathesis did not finish in 90 s:\n{out[-6000:]}")
    assert done.returncode == 0, (
        f"schemathesis found problems:\n{done.stdout[-12000:]}\n{done.stderr[-2000:]}"
    )


@pytest.mark.parametrize("service", ["gateway", "query"])
def test_internal_service_answers_as_its_openapi_document_says(
    stack: Stack, service: str, tmp_path: Path
) -> None:
    server = stack.gateway if service == "gateway" else stack.query
    # The callers' credential (the internal token) and the admin token, as the BFF and an operator send them.
    fuzz(
        server.url,
        tmp_path,
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--header",
        f"X-Cairn-Internal-Token: {INTERNAL_TOKEN}",
    )
    assert server.proc.poll() is None, server.log_text()[-4000:]


def test_bff_answers_as_its_openapi_document_says(stack: Stack, tmp_path: Path) -> None:
    # No key: local mode admits loopback, so every /api route reaches QS or the gateway.
    fuzz(stack.bff.url, tmp_path, "--generation-with-security-parameters", "false")
    assert all(s.proc.poll() is None for s in stack.all)


def test_every_route_is_in_its_document(stack: Stack) -> None:
    """A route added without an entry in the service's OPERATIONS would escape the fuzz run."""
    from cairn_bff.routes import ROUTES as BFF
    from cairn_gateway.routes import ROUTES as GATEWAY
    from cairn_query.http.routes import ROUTES as QUERY

    for server, routes in ((stack.gateway, GATEWAY), (stack.query, QUERY), (stack.bff, BFF)):
        doc = httpx.get(f"{server.url}/openapi.json", headers=INTERNAL, timeout=10).json()
        declared = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        served = {
            (m, r.path)
            for r in routes
            for m in getattr(r, "methods", None) or ()
            if m != "HEAD" and r.path != "/openapi.json"
        }
        assert served <= declared, f"{server.name}: not in /openapi.json: {sorted(served - declared)}"

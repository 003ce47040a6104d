"""Helpers of the connector tests: the admin API of a real QS, its embedding counter, and waiting for runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from cairn_query.corpus.documents import document_texts
from cairn_query.settings import QuerySettings
from cairn_testing import ServerProcess

from .conftest import ADMIN

# The scheduler looks for due sources 5 times a second; folder events are gathered for 100 ms.
FAST = {"QS_CONNECTORS_TICK_S": "0.2", "QS_CONNECTORS_WATCH_DEBOUNCE_MS": "100"}


def admin(qs: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=qs.url, headers=ADMIN, timeout=30)


def embedded(qs: ServerProcess) -> float:
    """Texts QS has had the gateway embed for documents (cairn_qs_embedded_texts): never for a question."""
    text = httpx.get(f"{qs.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_qs_embedded_texts_total")
    )


def wait_for(what: Callable[[], Any], timeout_s: float = 20.0, message: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or what}")
        time.sleep(0.1)


def status(client: httpx.Client, name: str) -> dict[str, Any]:
    resp = client.get(f"/v1/connectors/{name}/status")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def next_run(client: httpx.Client, name: str, after: str | None, timeout_s: float = 20.0) -> dict[str, Any]:
    """The status of the first run after the run with id `after` (any run when None), once it has ended."""

    def ended() -> dict[str, Any] | None:
        s = status(client, name)
        run = s["status"]
        if run is None or run["state"] == "running" or run["id"] == after:
            return None
        return run

    run: dict[str, Any] = wait_for(ended, timeout_s, f"a run of {name} after {after}")
    return run


def paths_found(client: httpx.Client, query: str, collection: str) -> list[str]:
    """The `path` of each hit, best first."""
    resp = client.post("/v1/search", json={"query": query, "collection": collection, "top_k": 10})
    assert resp.status_code == 200, resp.text
    return [h["metadata"]["path"] for h in resp.json()["results"] if "path" in h["metadata"]]


def texts_of(client: httpx.Client, doc_ids: list[str]) -> int:
    """How many texts ingest embeds for these stored documents (documents.document_texts, as QS computes)."""
    total = 0
    for doc_id in doc_ids:
        doc = client.get(f"/v1/documents/{doc_id}").json()
        total += len(document_texts(doc["title"], doc["text"], QuerySettings()))
    return total

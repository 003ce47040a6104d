"""Batch ingest through a real QS on a real (toy) gateway: a job reports its progress, stores every document
that can be stored, names the ones that cannot with their reason code, and a job sent again (as after a crash)
embeds nothing that is stored already (counted at the gateway)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import ServerProcess

from .conftest import start_qs


def embedded_texts(gateway: ServerProcess) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_gateway_embedded_texts_total{")
    )


def wait(client: httpx.Client, job_id: str) -> dict:
    for _ in range(300):
        job = client.get(f"/v1/ingest/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running: {job}")


@pytest.fixture()
def qs(toy_gateway: ServerProcess, tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_qs(
        toy_gateway.url, tmp_path / "qs.sqlite3", QS_INGEST_GROUP="3", QS_MAX_DOCUMENT_CHARS="2000"
    )
    yield srv
    srv.stop()


def test_a_batch_job_stores_each_document_once_and_a_resent_job_embeds_nothing_again(
    qs: ServerProcess, toy_gateway: ServerProcess
) -> None:
    docs = [
        {"id": f"doc{i}", "title": f"Topic {i}", "text": f"Topic {i} covers subject number {i}. " * 5}
        for i in range(8)
    ]
    docs.append({"id": "huge", "text": "x " * 1500})  # past QS_MAX_DOCUMENT_CHARS
    with httpx.Client(base_url=qs.url, timeout=30) as client:
        before = embedded_texts(toy_gateway)
        started = client.post("/v1/documents/batch", json={"documents": docs})
        assert started.status_code == 202 and started.json()["total"] == 9
        job = wait(client, started.json()["id"])
        assert (job["state"], job["done"], job["stored"], job["unchanged"]) == ("done", 9, 8, 0)
        assert [(f["index"], f["id"], f["reason_code"]) for f in job["failed"]] == [
            (8, "huge", "PAYLOAD_TOO_LARGE")
        ]
        embedded = embedded_texts(toy_gateway) - before
        assert embedded >= 8
        listed = client.get("/v1/documents", params={"limit": 50}).json()
        assert listed["total"] == 8 and all(d["embedded"] for d in listed["documents"])
        hits = client.post("/v1/search", json={"query": "subject number 5"}).json()
        assert any(h["document_id"] == "doc5" for h in hits["results"])

        # Sent again (the client's retry after a crash): nothing stored is embedded or written again.
        first = client.get("/v1/documents/doc0").json()
        searched = embedded_texts(toy_gateway)  # the search embedded its query
        time.sleep(1.1)  # updated_at has whole seconds: a rewrite now would show
        again = wait(client, client.post("/v1/documents/batch", json={"documents": docs[:8]}).json()["id"])
        assert (again["stored"], again["unchanged"], again["failed"]) == (0, 8, [])
        assert embedded_texts(toy_gateway) == searched
        assert client.get("/v1/documents/doc0").json()["updated_at"] == first["updated_at"]


def test_a_job_is_its_owners_only(qs: ServerProcess) -> None:
    with httpx.Client(base_url=qs.url, timeout=30) as client:
        doc = {"text": "Owned text about tents."}
        job = client.post(
            "/v1/documents/batch", json={"documents": [doc]}, headers={"X-Cairn-Owner": "key:a"}
        ).json()
        assert client.get(f"/v1/ingest/{job['id']}", headers={"X-Cairn-Owner": "key:b"}).status_code == 404
        assert client.get(f"/v1/ingest/{job['id']}", headers={"X-Cairn-Owner": "key:a"}).status_code == 200
        missing = client.get("/v1/ingest/nope")
        assert missing.status_code == 404 and missing.json()["reason_code"] == "NOT_FOUND"

"""Hostile and broken uploads against real processes: each gets a clear 4xx (or 507) with a reason code, stores
nothing, and cannot take QS from other users while it is being refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_core import split_sentences
from cairn_query.corpus.chunking import Piece, chunk_text
from cairn_query.corpus.documents import DocumentService
from cairn_query.metrics import QueryMetrics
from cairn_query.schemas import DocumentIn
from cairn_query.settings import QuerySettings
from cairn_query.store import SQLiteStore
from cairn_testing import ServerProcess, free_port, gateway_env, start_server, wait_for
from pydantic import ValidationError

from .conftest import start_qs

PARSE_TIMEOUT_S = 1.5


def assert_refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text[:500]
    body = resp.json()
    assert body["reason_code"] == code and body["message"] and body["request_id"]


@pytest.fixture()
def client(qs: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=qs.url, timeout=20) as client:
        yield client


def test_hostile_html_is_refused_in_time_while_the_store_keeps_answering(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    srv = start_qs(
        toy_gateway.url,
        tmp_path / "hostile.sqlite3",
        QS_PARSE_TIMEOUT_S=str(PARSE_TIMEOUT_S),
        QS_PARSE_CONCURRENCY="2",
    )
    try:
        httpx.post(f"{srv.url}/v1/documents", json={"id": "keep", "text": "Lighthouses guide ships."})
        hostile = b"<a " * 20000  # html.parser is quadratic on it: about 40 s unbounded
        n = 6  # more than the default thread pool of a 2-core machine

        def upload(_: int) -> tuple[httpx.Response, float]:
            start = time.perf_counter()
            resp = httpx.post(
                f"{srv.url}/v1/documents", files={"file": ("evil.html", hostile, "text/html")}, timeout=30
            )
            return resp, time.perf_counter() - start

        def store_latencies() -> list[float]:
            out = []
            end = time.perf_counter() + 2 * PARSE_TIMEOUT_S
            while time.perf_counter() < end:
                start = time.perf_counter()
                assert httpx.get(f"{srv.url}/v1/documents", timeout=10).json()["total"] == 1
                search = httpx.post(f"{srv.url}/v1/search", json={"query": "lighthouses"}, timeout=10)
                assert search.json()["results"][0]["chunk_id"] == "keep:0"
                out.append(time.perf_counter() - start)
                time.sleep(0.1)
            return out

        with concurrent.futures.ThreadPoolExecutor(n + 1) as pool:
            uploads = [pool.submit(upload, i) for i in range(n)]
            time.sleep(0.3)  # let the parses start
            latencies = pool.submit(store_latencies).result()
            results = [f.result() for f in uploads]
        for resp, _ in results:
            assert_refused(resp, 422, "DOCUMENT_TOO_COMPLEX")
        took = sorted(t for _, t in results)
        # Two parse at once; each is killed at the limit, so they finish in waves of two.
        assert took[0] < PARSE_TIMEOUT_S + 1.5, took
        assert took[-1] < (n / 2) * PARSE_TIMEOUT_S + 3, took
        assert max(latencies) < 1.0, latencies
        assert httpx.get(f"{srv.url}/v1/documents").json()["total"] == 1
    finally:
        srv.stop()


def test_html_with_a_broken_marked_section_is_stored_without_it(client: httpx.Client) -> None:
    resp = client.post(
        "/v1/documents",
        files={"file": ("marked.html", b"<p>Helmets are required on site.</p><![ x", "text/html")},
    )
    assert resp.status_code == 201, resp.text
    doc = client.get(f"/v1/documents/{resp.json()['id']}").json()
    assert doc["text"] == "Helmets are required on site."


def test_storage_limits_per_document_and_store_wide(toy_gateway: ServerProcess, tmp_path: Path) -> None:
    srv = start_qs(
        toy_gateway.url,
        tmp_path / "limits.sqlite3",
        QS_MAX_DOCUMENT_CHARS="1000",
        QS_MAX_TOTAL_CHUNKS="3",
        QS_CHUNK_CHARS="100",
        QS_CHUNK_OVERLAP_CHARS="0",
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=20) as c:
            assert_refused(c.post("/v1/documents", json={"text": "word " * 201}), 413, "PAYLOAD_TOO_LARGE")
            big = c.post("/v1/documents", files={"file": ("big.txt", b"word " * 201, "text/plain")})
            assert_refused(big, 413, "PAYLOAD_TOO_LARGE")
            two = "The first fact is long enough to fill most of a chunk. The second fact is as long as the first one."
            assert c.post("/v1/documents", json={"id": "two", "text": two}).json()["chunks"] == 2
            assert c.post("/v1/documents", json={"id": "one", "text": "Short."}).status_code == 201
            assert_refused(c.post("/v1/documents", json={"id": "more", "text": "Over."}), 507, "STORAGE_FULL")
            # A replacement counts without the chunks it replaces.
            assert c.post("/v1/documents", json={"id": "two", "text": two.upper()}).status_code == 201
            assert c.get("/readyz").json()["chunks"] == 3
            c.delete("/v1/documents/one")
            assert c.post("/v1/documents", json={"id": "more", "text": "Over."}).status_code == 201
    finally:
        srv.stop()


def _multipart(client: httpx.Client, metadata: str) -> httpx.Response:
    return client.post(
        "/v1/documents",
        files={"file": ("m.txt", b"Metadata test text.", "text/plain")},
        data={"metadata": metadata},
    )


@pytest.mark.parametrize(
    "metadata",
    [
        '{"k": ' + "[" * 3000 + "]" * 3000 + "}",
        '{"k": "\\ud800"}',
        '{"k": NaN}',
        '{"k": Infinity}',
        '["not", "an", "object"]',
        json.dumps({"k": "x" * 20_000}),
    ],
    ids=["deep", "lone-surrogate", "nan", "infinity", "list", "huge"],
)
def test_bad_multipart_metadata_is_a_400_and_filters_keep_working(
    client: httpx.Client, metadata: str
) -> None:
    before = client.get("/v1/documents").json()["total"]
    assert_refused(_multipart(client, metadata), 400, "BAD_REQUEST")
    assert client.get("/v1/documents").json()["total"] == before
    resp = client.post("/v1/search", json={"query": "leave", "filters": {"team": "hr"}})
    assert resp.status_code == 200 and resp.json()["results"][0]["chunk_id"] == "leave:0"


def test_bad_json_metadata_tokens_are_a_400(client: httpx.Client) -> None:
    for raw in (b'{"text": "x", "metadata": {"k": NaN}}', b'{"text": "x", "metadata": {"k": "\\ud800"}}'):
        resp = client.post("/v1/documents", content=raw, headers={"content-type": "application/json"})
        assert_refused(resp, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "metadata",
    [{"k": float("nan")}, {"k": float("-inf")}, {"k": "\ud800"}, {"\udfff": 1}, {"k": "x" * 20_000}, [1]],
)
def test_document_in_refuses_metadata_that_cannot_be_stored(metadata: Any) -> None:
    with pytest.raises(ValidationError, match="metadata"):
        DocumentIn.model_validate({"text": "x", "metadata": metadata})


def test_dot_ids_are_refused_and_dotted_ids_kept(client: httpx.Client) -> None:
    for bad in (".", ".."):
        assert_refused(client.post("/v1/documents", json={"id": bad, "text": "Dots."}), 400, "BAD_REQUEST")
    resp = client.post("/v1/documents", json={"id": "v1.2_notes-x", "text": "Release notes."})
    assert resp.status_code == 201
    assert client.delete("/v1/documents/v1.2_notes-x").json()["deleted"] is True


class _Gateway:
    async def embed(self, texts: list[str]) -> tuple[list[list[float]], str]:
        return [[1.0, 0.0] for _ in texts], "stub"


async def test_chunking_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cairn_query.corpus.documents as documents

    def slow_chunks(text: str, size: int, overlap: int) -> list[Piece]:
        time.sleep(0.5)  # what normalising and chunking a few million characters costs
        return [Piece(None, text)]

    monkeypatch.setattr(documents, "chunk_document", slow_chunks)
    store = SQLiteStore(str(tmp_path / "loop.sqlite3"))
    svc = DocumentService(QuerySettings(), store, _Gateway(), QueryMetrics())  # type: ignore[arg-type]
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        _, created, _ = await svc.ingest(DocumentIn(text="Some text."))
    finally:
        tick.cancel()
        svc.close()
        store.close()
    assert created and max(gaps) < 0.2, max(gaps)


def test_the_embedding_work_of_an_upload_is_capped_and_reported(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    """1 MB of "Ab. " was 1,527 chunks with every sentence embedded: 60 s with the toy embedder, and with the
    real one the embed call timed out. Now each chunk embeds at most 24 sentences, the document 8,000."""
    db = tmp_path / "qs.sqlite3"
    srv = start_qs(toy_gateway.url, db)
    try:
        resp = httpx.post(f"{srv.url}/v1/documents", json={"id": "ab", "text": "Ab. " * 250_000}, timeout=120)
        assert resp.status_code == 201, resp.text[:300]
        body = resp.json()
        assert body["embedded"] is True and body["chunks"] > 1_000
        with sqlite3.connect(db) as conn:
            dims = int(conn.execute("SELECT value FROM meta WHERE key='embed_dims'").fetchone()[0])
            rows = [n // (4 * dims) for (n,) in conn.execute("SELECT LENGTH(embedding) FROM chunks")]
        assert len(rows) == body["chunks"] and max(rows) == 1 + 24  # the chunk's vector and 24 sentences'
        assert sum(rows) == body["chunks"] + 8_000
        sentences = sum(len(split_sentences(c)) for c in chunk_text("Ab. " * 250_000, 800, 150))
        assert body["sentences_without_vector"] == sentences - 8_000  # what the caps left out is said
        # A sentence past the caps still answers: evidence embeds it when it needs it.
        assert httpx.post(f"{srv.url}/v1/search", json={"query": "Ab"}, timeout=30).status_code == 200
    finally:
        srv.stop()


def test_a_document_stored_without_vectors_is_marked_and_embedded_when_the_gateway_is_back(
    tmp_path: Path,
) -> None:
    port = free_port()  # no gateway there yet: the upload's embed call fails
    srv = start_qs(
        f"http://127.0.0.1:{port}",
        tmp_path / "qs.sqlite3",
        QS_EMBED_RETRY_S="0.3",
        QS_CIRCUIT_FAILURES="1000",
    )
    gateway = None
    try:
        doc = {"id": "cairns", "text": "Cairns are piles of stones. They mark trails across the moor."}
        stored = httpx.post(f"{srv.url}/v1/documents", json=doc, timeout=30).json()
        assert stored["embedded"] is False  # searchable by keywords only, and it says so
        listed = httpx.get(f"{srv.url}/v1/documents", timeout=10).json()["documents"]
        assert [d["embedded"] for d in listed] == [False]
        gateway = start_server(
            "gateway", ["cairn_gateway"], port=port, env=gateway_env(), health_path="/readyz"
        )
        wait_for(
            lambda: httpx.get(f"{srv.url}/v1/documents/cairns", timeout=10).json()["embedded"],
            "the retry to embed the document",
            30,
            0.2,
        )
        assert "document_embedded" in srv.log_text()
    finally:
        srv.stop()
        if gateway is not None:
            gateway.stop()

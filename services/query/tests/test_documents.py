"""Ingestion against real processes: JSON and file uploads, idempotency, deletion, bad input, restarts."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cairn_query.corpus.documents import document_texts
from cairn_query.settings import QuerySettings
from cairn_testing import ServerProcess

from .conftest import ADMIN, minimal_pdf, start_gateway, start_qs


@pytest.fixture()
def client(qs: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=qs.url, timeout=20) as client:
        yield client


def search_ids(client: httpx.Client, query: str, **kw: object) -> list[str]:
    resp = client.post("/v1/search", json={"query": query, **kw})
    assert resp.status_code == 200, resp.text
    return [r["chunk_id"] for r in resp.json()["results"]]


def bm25_ids(client: httpx.Client, query: str) -> list[str]:
    """Chunks whose text matched the query words (vector search ranks every chunk, so it can't tell)."""
    results = client.post("/v1/search", json={"query": query}).json()["results"]
    return [r["chunk_id"] for r in results if r["bm25_rank"] is not None]


def test_ingest_then_search_finds_the_chunk_with_title_url_and_scores(client: httpx.Client) -> None:
    body = client.post("/v1/search", json={"query": "how many days of paid leave", "top_k": 3}).json()
    assert body["mode"] == "hybrid"
    top = body["results"][0]
    assert top["chunk_id"] == "leave:0"
    assert top["title"] == "Leave policy" and top["url"] == "https://wiki.example/leave"
    assert top["bm25_rank"] == 1 and top["score"] > 0 and "25 days" in top["text"]
    assert len(body["results"]) <= 3


def test_collection_and_metadata_filters(client: httpx.Client) -> None:
    assert search_ids(client, "VPN WireGuard", collection="it") == ["vpn:0"]
    assert "vpn:0" not in search_ids(client, "VPN WireGuard", collection="default")
    assert search_ids(client, "office closes", filters={"team": "hr"}) == ["leave:0"]
    assert search_ids(client, "office closes", filters={"team": "nobody"}) == []


def test_reingest_is_idempotent_and_a_change_replaces_chunks(client: httpx.Client) -> None:
    doc = {
        "id": "tmp-idem",
        "title": "Parking",
        "text": "Parking spots are assigned by lottery every quarter.",
    }
    first = client.post("/v1/documents", json=doc)
    again = client.post("/v1/documents", json=doc)
    assert first.status_code == 201 and first.json()["created"] is True
    assert again.status_code == 200 and again.json()["changed"] is False
    changed = client.post(
        "/v1/documents", json={**doc, "text": "Parking spots are first come, first served."}
    )
    assert changed.status_code == 201 and changed.json()["created"] is False
    assert client.get("/v1/chunks/tmp-idem:0").json()["text"] == "Parking spots are first come, first served."
    assert "tmp-idem:0" not in bm25_ids(client, "lottery quarter")
    # Without an id, the same url gives the same document.
    a = client.post("/v1/documents", json={"url": "https://x.example/a", "text": "Alpha text."}).json()
    b = client.post("/v1/documents", json={"url": "https://x.example/a", "text": "Alpha text."}).json()
    assert a["id"] == b["id"] and b["changed"] is False


def test_delete_removes_the_document_from_every_index(client: httpx.Client) -> None:
    client.post("/v1/documents", json={"id": "tmp-del", "text": "Zebras graze on the savannah plains."})
    assert search_ids(client, "zebras savannah")[0] == "tmp-del:0"
    resp = client.delete("/v1/documents/tmp-del")
    assert resp.json() == {"id": "tmp-del", "deleted": True, "chunks": 1}
    assert "tmp-del:0" not in search_ids(client, "zebras savannah")
    assert bm25_ids(client, "zebras savannah") == []
    assert client.get("/v1/chunks/tmp-del:0").status_code == 404
    assert client.get("/v1/documents/tmp-del").json()["reason_code"] == "NOT_FOUND"
    assert client.delete("/v1/documents/tmp-del").status_code == 404


def test_get_and_list_documents(client: httpx.Client) -> None:
    doc = client.get("/v1/documents/leave").json()
    assert doc["chunk_ids"] == ["leave:0"] and "25 days" in doc["text"]
    listed = client.get("/v1/documents", params={"collection": "it"}).json()
    assert listed["total"] == 1 and listed["documents"][0]["id"] == "vpn"
    assert client.get("/v1/documents", params={"limit": "x"}).json()["reason_code"] == "BAD_REQUEST"


def test_search_documents_by_title_and_list_collections(client: httpx.Client) -> None:
    found = client.get("/v1/documents", params={"q": "vpn"}).json()
    assert [d["id"] for d in found["documents"]] == ["vpn"] and found["total"] == 1
    assert client.get("/v1/documents", params={"q": "vpn", "collection": "default"}).json()["total"] == 0
    too_long = client.get("/v1/documents", params={"q": "x" * 201})
    assert too_long.status_code == 400 and too_long.json()["reason_code"] == "BAD_REQUEST"
    collections = client.get("/v1/collections").json()["collections"]
    assert {"name": "it", "documents": 1} in collections
    assert [c["name"] for c in collections] == sorted(c["name"] for c in collections)


@pytest.mark.parametrize(
    ("name", "ctype", "data", "expect"),
    [
        ("notes.txt", "text/plain", b"Printer toner is in the supply closet.", "supply closet"),
        ("guide.md", "text/markdown", b"# Guide\n\nThe **kitchen** is cleaned on Fridays.", "Fridays"),
        (
            "page.html",
            "text/html",
            b"<html><head><title>Wiki page</title><style>p{}</style></head>"
            b"<body><p>Badges are renewed yearly.</p><script>alert(1)</script></body></html>",
            "renewed yearly",
        ),
        ("memo.pdf", "application/pdf", minimal_pdf("Fire drills happen every April."), "Fire drills"),
    ],
)
def test_upload_files(client: httpx.Client, name: str, ctype: str, data: bytes, expect: str) -> None:
    resp = client.post("/v1/documents", files={"file": (name, data, ctype)}, data={"collection": "uploads"})
    assert resp.status_code in (200, 201), resp.text
    doc = client.get(f"/v1/documents/{resp.json()['id']}").json()
    assert expect in doc["text"] and doc["collection"] == "uploads"
    assert "alert" not in doc["text"]
    if name.endswith(".html"):
        assert doc["title"] == "Wiki page"


def test_bad_input_is_a_clear_4xx_and_stores_nothing(client: httpx.Client) -> None:
    before = client.get("/v1/documents").json()["total"]
    cases = [
        (client.post("/v1/documents", json={"text": "   "}), 400, "BAD_REQUEST"),
        (
            client.post("/v1/documents", content=b"{not json", headers={"content-type": "application/json"}),
            400,
            "BAD_REQUEST",
        ),
        (client.post("/v1/documents", json={"text": "x", "collection": "bad name!"}), 400, "BAD_REQUEST"),
        (
            client.post("/v1/documents", files={"file": ("x.exe", b"MZ", "application/octet-stream")}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            client.post(
                "/v1/documents", files={"file": ("broken.pdf", b"%PDF-1.4 garbage", "application/pdf")}
            ),
            400,
            "BAD_REQUEST",
        ),
        (
            client.post("/v1/documents", files={"file": ("empty.txt", b"  \n", "text/plain")}),
            400,
            "BAD_REQUEST",
        ),
        (client.post("/v1/documents", files={"other": ("a.txt", b"text", "text/plain")}), 400, "BAD_REQUEST"),
        (
            client.post("/v1/documents", content=b"text", headers={"content-type": "text/plain"}),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert body["reason_code"] == code and body["message"] and body["request_id"]
    assert client.get("/v1/documents").json()["total"] == before


def test_oversize_upload_is_413(toy_gateway: ServerProcess, tmp_path: Path) -> None:
    srv = start_qs(toy_gateway.url, tmp_path / "small.sqlite3", QS_MAX_UPLOAD_BYTES="2000")
    try:
        resp = httpx.post(
            f"{srv.url}/v1/documents", files={"file": ("big.txt", b"word " * 1000, "text/plain")}
        )
        assert resp.status_code == 413 and resp.json()["reason_code"] == "PAYLOAD_TOO_LARGE"
        assert httpx.get(f"{srv.url}/v1/documents").json()["total"] == 0
    finally:
        srv.stop()


def test_restart_keeps_documents_and_concurrent_ingest_with_queries(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    db = tmp_path / "restart.sqlite3"
    srv = start_qs(toy_gateway.url, db)
    try:
        url = srv.url

        def timed(call: Callable[[], httpx.Response]) -> tuple[int, float, float]:
            start = time.monotonic()
            status = call().status_code
            return status, start, time.monotonic()

        def ingest(i: int) -> tuple[int, float, float]:
            text = f"Document number {i} talks about topic{i} and the shared subject of lighthouses."
            body = {"id": f"d{i}", "text": text}
            return timed(lambda: httpx.post(f"{url}/v1/documents", json=body, timeout=30))

        def query() -> tuple[int, float, float]:
            body = {"query": "lighthouses"}
            return timed(lambda: httpx.post(f"{url}/v1/search", json=body, timeout=30))

        # Ingests and queries interleaved in one pool, so that searches run while documents are being written.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ingests, queries = [], []
            for i in range(20):
                ingests.append(pool.submit(ingest, i))
                queries.append(pool.submit(query))
            ingested = [f.result() for f in ingests]
            searched = [f.result() for f in queries]
        assert {status for status, _, _ in ingested} == {201}
        assert {status for status, _, _ in searched} == {200}
        # Some search started before the last document was in: the two really ran at the same time.
        assert min(start for _, start, _ in searched) < max(end for _, _, end in ingested)
    finally:
        srv.stop()
    srv = start_qs(toy_gateway.url, db)
    try:
        assert httpx.get(f"{srv.url}/v1/documents").json()["total"] == 20
        hits = httpx.post(f"{srv.url}/v1/search", json={"query": "topic7"}).json()["results"]
        assert hits[0]["chunk_id"] == "d7:0"
        assert httpx.get(f"{srv.url}/readyz").json()["chunks"] == 20
    finally:
        srv.stop()


def test_embedding_model_change_is_refused_then_reembedded(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    """Vectors of two models never mix: after a switch search is BM25 only until /admin/reembed."""
    db = tmp_path / "switch.sqlite3"
    srv = start_qs(toy_gateway.url, db)
    try:
        httpx.post(f"{srv.url}/v1/documents", json={"id": "cats", "text": "The cat sits on the mat."})
    finally:
        srv.stop()
    onnx_gw = start_gateway(LLM_EMBED_PROVIDER="onnx")
    srv = start_qs(onnx_gw.url, db)
    try:
        search = {"query": "feline resting on a rug"}
        assert httpx.post(f"{srv.url}/v1/search", json=search).json()["mode"] == "bm25"
        # Ingest keeps working meanwhile; its vectors wait for the re-embed.
        assert (
            httpx.post(f"{srv.url}/v1/documents", json={"id": "dogs", "text": "Dogs bark."}).status_code
            == 201
        )
        body = httpx.post(f"{srv.url}/admin/reembed", headers=ADMIN, timeout=60).json()
        assert body["chunks"] == 2 and body["dims"] == 384 and body["model"] != "toy-hash-256"
        result = httpx.post(f"{srv.url}/v1/search", json=search).json()
        assert result["mode"] == "hybrid" and result["results"][0]["chunk_id"] == "cats:0"
    finally:
        srv.stop()
        onnx_gw.stop()


def _gateway_metric(gateway: ServerProcess, prefix: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_documents_chunk_and_sentence_vectors_go_to_the_gateway_in_one_call(
    client: httpx.Client, toy_gateway: ServerProcess
) -> None:
    text = " ".join(f"Form {i} is filed by day {i} of the month by the team." for i in range(120))
    title = "Filing rules"
    planned = document_texts(title, text, QuerySettings())
    # More than the old calls of 64 held, within one call of the gateway's cap.
    assert 64 < len(planned) <= 256
    calls = _gateway_metric(toy_gateway, "cairn_gateway_embed_inputs_count")
    texts = _gateway_metric(toy_gateway, "cairn_gateway_embedded_texts_total")
    resp = client.post("/v1/documents", json={"id": "filing", "title": title, "text": text})
    assert resp.status_code == 201 and resp.json()["embedded"]
    assert _gateway_metric(toy_gateway, "cairn_gateway_embedded_texts_total") - texts == len(planned)
    assert _gateway_metric(toy_gateway, "cairn_gateway_embed_inputs_count") - calls == 1
    assert search_ids(client, "When is form 77 filed?")[0].startswith("filing:")


@pytest.mark.parametrize("limit", ["²", "1" * 5000, "-1", "1001", "ten"])
def test_a_bad_limit_is_a_400_not_a_500(client: httpx.Client, limit: str) -> None:
    resp = client.get("/v1/documents", params={"limit": limit})
    assert resp.status_code == 400 and resp.json()["reason_code"] == "BAD_REQUEST", resp.text
    assert "'limit' must be an integer" in resp.json()["message"]


def test_sphinx_text_is_stored_as_clean_chunks_under_their_section(client: httpx.Client) -> None:
    # A real section of the Python Language Reference as Sphinx writes it (pydoc_data.topics, PSF licence).
    from pydoc_data.topics import topics

    doc = {"id": "tmp-power", "title": "Expressions", "text": topics["power"]}
    assert client.post("/v1/documents", json=doc).status_code == 201
    first = client.get("/v1/chunks/tmp-power:0").json()
    assert first["section"] == "The power operator"
    assert first["text"].startswith(
        "The power operator binds more tightly than unary operators on its left; it binds less tightly than"
        " unary operators on its right."
    )
    assert "******" not in first["text"]
    # The second chunk does not say "operator"; its section does, and the keyword index reads both.
    assert "tmp-power:1" in bm25_ids(client, "operator")
    assert client.delete("/v1/documents/tmp-power").status_code == 200

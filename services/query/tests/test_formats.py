"""Each upload format through the real QS (real gateway with the toy provider): a real file of the type, made
by the format's own library, is uploaded as a file, and a question about a table cell, a slide's speaker
notes or a scanned line is answered citing the chunk that holds it, with its page or slide number."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_query.corpus.chunking import chunk_text
from cairn_query.corpus.documents import chunk_document
from cairn_query.corpus.extract import html_to_text
from cairn_query.corpus.formats.tables import table_rows
from cairn_testing import ServerProcess

from . import real_files
from .conftest import sse, start_qs

SHEET_CSV = b"Region;Q3 revenue;Owner\nNorth;4.2 M;Ana\nEast;2.9 M;Cy\n"
UPLOADS = {
    "handbook.docx": real_files.docx_file,
    "roadmap.pptx": real_files.pptx_file,
    "revenue.xlsx": real_files.xlsx_file,
    "east.csv": lambda: SHEET_CSV,
    "warehouses.pdf": real_files.table_pdf,
    "memo.pdf": real_files.scanned_pdf,
    "vault.png": lambda: real_files.png_file(["The vault code changes every Tuesday."]),
}


@pytest.fixture(scope="module")
def qs_files(
    toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A QS holding one upload of each format; the documents as stored, by file name."""
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("formats") / "qs.sqlite3")
    stored: dict[str, Any] = {"srv": srv}
    with httpx.Client(base_url=srv.url, timeout=180) as client:
        for name, make in UPLOADS.items():
            data = make()
            resp = client.post("/v1/documents", files={"file": (name, data)}, data={"collection": "formats"})
            assert resp.status_code == 201, resp.text
            stored[name] = {**resp.json(), "bytes": data}
    yield stored
    srv.stop()


def ask(srv: ServerProcess, question: str) -> dict[str, Any]:
    resp = httpx.post(f"{srv.url}/v1/chat", json={"query": question, "collection": "formats"}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def cited(srv: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    """The first cited chunk, as GET /v1/chunks serves it."""
    assert body["status"] == "ok", body
    chunk_id = body["citations"][0]["chunk_id"]
    return httpx.get(f"{srv.url}/v1/chunks/{chunk_id}", timeout=10).json()


@pytest.mark.parametrize(
    ("question", "file", "quote", "section", "page"),
    [
        ("What is the daily allowance in Oslo?", "handbook.docx", "City: Oslo; Daily allowance: 95 EUR",
         "Expenses › Per diem", None),
        ("Why was the design budget cut?", "roadmap.pptx", "cut by a third after the March review",
         "Budget › Speaker notes", 2),
        ("What was the Q3 revenue of the North region?", "revenue.xlsx",
         "Region: North; Q3 revenue: 4.2 M; Owner: Ana", "Revenue", None),
        ("Who owns the East region?", "east.csv", "Region: East; Q3 revenue: 2.9 M; Owner: Cy", None, None),
        ("How many pallets are stored in Bergen?", "warehouses.pdf",
         "Warehouse: Bergen; Pallets: 120; Manager: Kari", None, 2),
        ("When is the boiler service booked?", "memo.pdf", "boiler service is booked for 14 May", None, 2),
        ("When does the vault code change?", "vault.png", "vault code changes every Tuesday", None, 1),
    ],
)  # fmt: skip
def test_a_question_about_each_format_cites_the_chunk_and_its_page(
    qs_files: dict[str, Any], question: str, file: str, quote: str, section: str | None, page: int | None
) -> None:
    srv = qs_files["srv"]
    body = ask(srv, question)
    chunk = cited(srv, body)
    assert chunk["document_id"] == qs_files[file]["id"], (file, body["citations"])
    assert quote in chunk["text"] and chunk["section"] == section and chunk["page"] == page
    assert body["citations"][0]["page"] == page
    source = next(s for s in body["sources"] if s["chunk_id"] == chunk["chunk_id"])
    assert source["page"] == page and source["section"] == section


def test_a_streamed_answer_cites_the_page_too(qs_files: dict[str, Any]) -> None:
    srv = qs_files["srv"]
    body = {"query": "Why was the design budget cut?", "collection": "formats", "stream": True}
    events = dict(sse(httpx.post(f"{srv.url}/v1/chat", json=body, timeout=60).text))
    assert events["done"]["status"] == "ok"
    assert events["citations"]["citations"][0]["page"] == 2
    assert events["sources"]["sources"][0]["page"] == 2


def test_a_pdf_is_kept_and_served_for_its_page_links(qs_files: dict[str, Any]) -> None:
    srv = qs_files["srv"]
    doc_id = qs_files["warehouses.pdf"]["id"]
    resp = httpx.get(f"{srv.url}/v1/documents/{doc_id}/original", timeout=10)
    assert resp.status_code == 200 and resp.content == qs_files["warehouses.pdf"]["bytes"]
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.headers["x-content-type-options"] == "nosniff"
    chunk = httpx.get(f"{srv.url}/v1/chunks/{doc_id}:0", timeout=10).json()
    assert chunk["original"] == "application/pdf" and chunk["page"] == 1
    # Only PDFs are kept: a slide deck has no file to open.
    deck = qs_files["roadmap.pptx"]["id"]
    missing = httpx.get(f"{srv.url}/v1/documents/{deck}/original", timeout=10)
    assert missing.status_code == 404 and missing.json()["reason_code"] == "NOT_FOUND"
    assert httpx.get(f"{srv.url}/v1/chunks/{deck}:0", timeout=10).json()["original"] is None


def test_titles_come_from_the_files(qs_files: dict[str, Any]) -> None:
    assert qs_files["handbook.docx"]["title"] == "Travel handbook"
    assert qs_files["roadmap.pptx"]["title"] == "Roadmap"  # no deck title: the first slide's
    assert qs_files["warehouses.pdf"]["title"] == "Warehouse report"
    assert qs_files["vault.png"]["title"] == "vault.png"


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("locked.pdf", real_files.encrypted_pdf(), 400, "BAD_REQUEST"),
        ("broken.docx", b"PK\x03\x04 not a zip", 400, "BAD_REQUEST"),
        ("broken.xlsx", b"garbage", 400, "BAD_REQUEST"),
        ("broken.pptx", b"", 400, "BAD_REQUEST"),
        ("broken.png", b"\x89PNG\r\n\x1a\n broken", 400, "BAD_REQUEST"),
        ("broken.pdf", b"%PDF-1.4 garbage", 400, "BAD_REQUEST"),
        ("program.exe", b"MZ", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_a_broken_or_unsupported_file_is_refused_with_its_reason(
    qs_files: dict[str, Any], name: str, data: bytes, status: int, code: str
) -> None:
    resp = httpx.post(f"{qs_files['srv'].url}/v1/documents", files={"file": (name, data)}, timeout=60)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["reason_code"] == code and name in body["message"] and body["request_id"]
    if name == "locked.pdf":
        assert "encrypted" in body["message"]


def test_images_are_refused_when_ocr_is_off(toy_gateway: ServerProcess, tmp_path: Path) -> None:
    srv = start_qs(toy_gateway.url, tmp_path / "no-ocr.sqlite3", QS_OCR_ENABLED="false")
    try:
        png = real_files.png_file(["Any text."])
        resp = httpx.post(f"{srv.url}/v1/documents", files={"file": ("scan.png", png)}, timeout=30)
        assert resp.status_code == 415 and "QS_OCR_ENABLED" in resp.json()["message"]
    finally:
        srv.stop()


def test_a_chunk_never_splits_a_table_row() -> None:
    header = ["Ticket", "Status", "Note"]
    body = [[f"T-{i}", "open", f"Waiting for the vendor. Call back on day {i}."] for i in range(40)]
    text = "\n\n".join(table_rows([header, *body]))
    rows = [r.lstrip("\v") for r in table_rows([header, *body])]
    chunks = chunk_text(text, size=200, overlap=60)
    assert len(chunks) > 5
    for chunk in chunks:
        # Each chunk is whole rows: no row is cut at its sentence break ("vendor. Call back").
        assert set(chunk.split("\n\n")) <= set(rows), chunk
    assert {r for c in chunks for r in c.split("\n\n")} == set(rows)


def test_pages_and_rows_survive_normalising_and_a_row_longer_than_a_chunk_is_cut_between_cells() -> None:
    text = "\f1\n\n\vName: A; Notes: " + "; ".join(f"item {i}" for i in range(60)) + "\n\n\f2\n\nPage two."
    pieces = chunk_document(text, 200, 0)
    assert [p.page for p in pieces][-1] == 2 and {p.page for p in pieces[:-1]} == {1}
    assert all(len(p.text) <= 200 for p in pieces) and pieces[1].text.startswith("item")
    assert all(not p.text.startswith(("\v", "\f")) for p in pieces)


def test_html_boilerplate_is_dropped_and_tables_keep_their_column_names() -> None:
    text, title = html_to_text(
        "<html><head><title>Rota</title><style>p{}</style></head><body>"
        "<header><a>Home</a> <a>Login</a></header><nav><ul><li>Menu item</li></ul></nav>"
        "<div role='navigation'><div>Breadcrumbs</div></div>"
        "<main><article><header><h1>Support rota</h1></header><p>Who answers the phone.</p>"
        "<table><tr><th>Day</th><th>Engineer</th></tr><tr><td>Monday</td><td><b>Ines</b></td></tr></table>"
        "</article><aside>Related pages</aside></main><footer>© Example Corp</footer>"
        "<script>track()</script></body></html>"
    )
    assert title == "Rota"
    for boilerplate in ("Home", "Menu item", "Breadcrumbs", "Related", "Example Corp", "track"):
        assert boilerplate not in text
    assert "# Support rota" in text and "\vDay: Monday; Engineer: Ines" in text


def test_a_pdf_synced_from_a_folder_keeps_its_pages_and_file_through_a_rename(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    from cairn_query.connectors.sync import document_id

    from .connector_helpers import FAST, admin, next_run

    root = tmp_path / "share"
    root.mkdir()
    (root / "warehouses.pdf").write_bytes(real_files.table_pdf())
    srv = start_qs(toy_gateway.url, tmp_path / "qs.sqlite3", QS_CONNECTORS_FOLDER_ROOTS=str(tmp_path), **FAST)
    try:
        with admin(srv) as client:
            body = {"name": "share", "kind": "folder", "config": {"path": str(root), "watch": False}}
            assert client.post("/v1/connectors", json={**body, "interval_s": 3600}).status_code == 201
            first = next_run(client, "share", None)
            assert (first["state"], first["added"]) == ("ok", 1), first
            for name in ("warehouses.pdf", "stock.pdf"):
                doc_id = document_id("share", name)
                hit = client.post("/v1/search", json={"query": "pallets in Bergen"}).json()["results"][0]
                assert hit["document_id"] == doc_id and hit["page"] == 2
                original = client.get(f"/v1/documents/{doc_id}/original")
                assert original.status_code == 200 and original.content == (root / name).read_bytes()
                if name == "warehouses.pdf":  # renamed: adopted without a parse, pages and file kept
                    (root / name).rename(root / "stock.pdf")
                    assert client.post("/v1/connectors/share/run").status_code in (200, 202)
                    run = next_run(client, "share", first["id"])
                    assert (run["state"], run["renamed"]) == ("ok", 1), run
    finally:
        srv.stop()

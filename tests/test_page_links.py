"""A citation of a PDF links to its page through the BFF (issue 26): upload a real PDF (reportlab) through the
BFF, ask about its second page, and open the kept file the citation points at; the page's file picker offers
exactly the formats QS reads."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
from cairn_query.corpus.parsing import SUPPORTED

from .conftest import start_stack


def two_page_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    pdf.drawString(72, 720, "The first page introduces the fleet.")
    pdf.showPage()
    pdf.drawString(72, 720, "The ferry to Svalbard leaves at 06:40 on Mondays.")
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_a_pdf_citation_names_its_page_and_the_bff_serves_the_file_for_it(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        bff = stack.bff.url
        data = two_page_pdf()
        up = httpx.post(f"{bff}/api/documents", files={"file": ("fleet.pdf", data)}, timeout=60)
        assert up.status_code == 201, up.text
        body = httpx.post(
            f"{bff}/api/chat", json={"query": "When does the ferry to Svalbard leave?"}, timeout=60
        ).json()
        assert body["status"] == "ok" and body["citations"][0]["page"] == 2, body
        assert body["sources"][0]["page"] == 2
        doc_id = up.json()["id"]
        original = httpx.get(f"{bff}/api/documents/{doc_id}/original", timeout=10)
        assert original.status_code == 200 and original.content == data
        assert original.headers["content-type"] == "application/pdf"
        assert original.headers["content-disposition"] == "inline"
        # Its own policy: the page's `object-src 'none'` would block the browser's PDF viewer.
        assert "object-src 'self'" in original.headers["content-security-policy"]
        missing = httpx.get(f"{bff}/api/documents/nope/original", timeout=10)
        assert missing.status_code == 404 and missing.json()["reason_code"] == "NOT_FOUND"
        # The file picker offers what QS reads, no more and no less.
        page = httpx.get(f"{bff}/", timeout=10).text
        accept = re.search(r'id="file-input"[^>]*accept="([^"]+)"', page, re.S)
        assert accept is not None and set(accept.group(1).split(",")) == set(SUPPORTED)
    finally:
        stack.stop()

"""A citation of a PDF links to its page through the BFF (issue 26): upload a real PDF (reportlab) through the
BFF, ask about its second page, and open the kept file the citation points at; the page's file picker offers
exactly the formats QS reads."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
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


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_opens_a_cited_pdf_at_its_page(tmp_path: Path) -> None:
    """In a real Chromium: upload a PDF with the page's file picker, ask, open the citation, and the dialog's
    button opens the kept PDF at the cited page."""
    from playwright.sync_api import expect

    from .test_browser import chromium_page

    pdf = tmp_path / "fleet.pdf"
    pdf.write_bytes(two_page_pdf())
    stack = start_stack(tmp_path)
    try:
        with chromium_page(1280, 860) as page:
            page.goto(stack.bff.url)
            page.set_input_files("#file-input", str(pdf))
            page.click("#upload-btn")
            expect(page.locator("#upload-status")).to_contain_text("Added")
            page.fill("#question", "When does the ferry to Svalbard leave?")
            page.click("#send-btn")
            answer = page.locator(".msg.assistant").nth(0)
            expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
            expect(answer.locator(".citations li")).to_contain_text("p. 2")
            answer.locator(".citations li button").first.click()
            expect(page.locator("#chunk-meta")).to_contain_text("p. 2")
            button = page.locator("#chunk-open-btn")
            expect(button).to_have_text("Open the PDF at page 2")
            with page.context.expect_page() as opened:
                button.click()
            assert re.search(r"/api/documents/[^/]+/original#page=2$", opened.value.url), opened.value.url
    finally:
        stack.stop()

"""The web page in a real Chromium (Debian's, driven by Playwright) against the three real services.

Upload a document, ask, watch the answer stream in with numbered citations, open a cited chunk, stop a second
answer mid-stream (the gateway sees the cancel), and save a screenshot to artifacts/browser/chat.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import free_port

from .conftest import Stack, start_stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CAIRN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The toy model answers with the first sentence (up to 160 characters) of the best chunk: a long one keeps the
# second answer streaming for over a second, so pressing stop lands in the middle of it.
HANDBOOK = """# Staff handbook

Employees get 25 days of paid leave a year, plus public holidays, and requests for leave go to your manager at
least two weeks ahead through the HR portal.

Cover for customer support shifts is arranged by the team lead once the leave is approved.
"""


def ensure_chromium() -> str:
    """Debian's chromium; installed with apt when missing (Playwright's own browser download does not work)."""
    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.fail(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900)
    return CHROMIUM


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Toy tokens 40 ms apart: slow enough to see the answer stream and to press stop in the middle of it.
    s = start_stack(tmp_path_factory.mktemp("browser"), toy_delay_ms=40)
    yield s
    s.stop()


def _cancelled_generations(stack: Stack) -> float:
    text = httpx.get(f"{stack.gateway.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_gateway_requests_total{") and 'reason_code="CANCELLED"' in line
    )


def test_chat_page_end_to_end(stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = ensure_chromium()
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(stack.bff.url)
            expect(page.locator("#model-select")).to_contain_text("toy")

            # Upload.
            page.set_input_files("#file-input", str(doc))
            page.click("#upload-btn")
            expect(page.locator("#upload-status")).to_contain_text("Added")
            expect(page.locator("#doc-list .doc")).to_have_count(1)

            # Ask: the answer streams in (seen unfinished with text), then ends with numbered citations.
            page.fill("#question", "How many days of paid leave do employees get?")
            page.click("#send-btn")
            first = page.locator(".msg.assistant").nth(0)
            page.wait_for_selector(".msg.assistant[data-state=streaming] .answer:not(:empty)", timeout=15_000)
            expect(first).to_have_attribute("data-state", "done", timeout=20_000)
            assert int(first.get_attribute("data-deltas") or 0) >= 3, "the answer did not arrive in pieces"
            expect(first.locator(".answer")).to_contain_text("25 days of paid leave")
            expect(first.locator(".answer .ref")).to_have_text(["[1]"])
            expect(first.locator(".citations li")).to_have_count(1)
            expect(first.locator(".notice")).to_be_hidden()

            # A numbered citation opens the cited chunk's text.
            first.locator(".answer .ref").first.click()
            expect(page.locator("#chunk-dialog")).to_be_visible()
            expect(page.locator("#chunk-text")).to_contain_text("Employees get 25 days of paid leave")
            page.click("#chunk-close")
            expect(page.locator("#chunk-dialog")).to_be_hidden()

            # Second question: press stop while it streams; the generation is cancelled up to the gateway.
            cancelled_before = _cancelled_generations(stack)
            page.fill("#question", "When must leave requests reach the manager through the HR portal?")
            page.click("#send-btn")
            second = page.locator(".msg.assistant").nth(1)
            expect(second.locator(".answer")).not_to_be_empty(timeout=15_000)
            expect(second).to_have_attribute("data-state", "streaming")
            page.click("#stop-btn")
            expect(second).to_have_attribute("data-state", "stopped")
            expect(second.locator(".footer")).to_contain_text("Stopped")
            expect(page.locator("#send-btn")).to_be_enabled()
            deadline = time.monotonic() + 10
            while _cancelled_generations(stack) <= cancelled_before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _cancelled_generations(stack) > cancelled_before, "the gateway never saw the cancel"

            # A question with no context shows the fallback notice, unmistakably.
            page.fill("#question", "zyxwv qwerty plugh xyzzy")
            page.click("#send-btn")
            third = page.locator(".msg.assistant").nth(2)
            expect(third).to_have_attribute("data-state", "fallback", timeout=15_000)
            expect(third.locator(".notice.fallback")).to_contain_text("NO_CONTEXT")

            page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
            assert not errors, errors

            # The dashboard shows the gateway's live numbers.
            page.goto(f"{stack.bff.url}/dashboard")
            expect(page.locator("#requests")).not_to_have_text("–", timeout=10_000)
            expect(page.locator("#health-table")).to_contain_text("up")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()


def test_model_down_shows_an_unmistakable_fallback(tmp_path: Path) -> None:
    """The gateway's model server is unreachable: the page says so, with the reason code and the passages."""
    from playwright.sync_api import expect, sync_playwright

    executable = ensure_chromium()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    stack = start_stack(
        tmp_path,
        gateway_env={
            "LLM_PROVIDER": "openai_compat",
            "LLM_BASE_URL": dead,
            "LLM_MODEL": "m",
            "LLM_RETRIES": "0",
        },
    )
    try:
        doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 700})
                page.goto(stack.bff.url)
                page.fill("#question", "How many days of paid leave do employees get?")
                page.click("#send-btn")
                answer = page.locator(".msg.assistant").nth(0)
                expect(answer).to_have_attribute("data-state", "fallback", timeout=30_000)
                notice = answer.locator(".notice.fallback")
                expect(notice).to_be_visible()
                expect(notice).to_contain_text("Fallback answer (PROVIDER_")
                expect(answer.locator(".sources")).to_contain_text("Leave policy")
                expect(answer.locator(".citations li")).to_have_count(0)
                page.screenshot(path=str(ARTIFACTS / "fallback.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stack.stop()


def test_an_unsupported_answer_is_withdrawn_and_the_page_says_why(tmp_path: Path) -> None:
    """A real OpenAI-compatible server cites a real chunk but invents a number: the text it streamed is struck
    through, its citations go, and the notice names the number that the sources do not hold."""
    from cairn_testing import start_server
    from playwright.sync_api import expect, sync_playwright

    executable = ensure_chromium()
    fake = start_server("fake-openai", ["cairn_testing.fake_openai", "--port", "{port}"])
    stack = start_stack(
        tmp_path,
        gateway_env={
            "LLM_PROVIDER": "openai_compat",
            "LLM_BASE_URL": f"{fake.url}/v1",
            "LLM_MODEL": "fake-model",
            "LLM_EMBED_PROVIDER": "toy",
        },
    )
    try:
        doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 700})
                page.goto(stack.bff.url)
                page.fill("#question", "How many days of paid leave do employees get? [[made_up_number]]")
                page.click("#send-btn")
                answer = page.locator(".msg.assistant").nth(0)
                expect(answer).to_have_attribute("data-state", "fallback", timeout=30_000)
                notice = answer.locator(".notice.fallback")
                expect(notice).to_contain_text("Fallback answer (UNSUPPORTED_ANSWER)")
                expect(notice).to_contain_text("4711 does not appear in the cited sources")
                expect(answer.locator(".answer.discarded")).to_have_count(1)
                expect(answer.locator(".citations li")).to_have_count(0)
                expect(answer.locator(".sources")).to_contain_text("Leave policy")
                page.screenshot(path=str(ARTIFACTS / "unsupported.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stack.stop()
        fake.stop()


def test_a_model_that_is_not_there_yet_shows_a_banner_and_labelled_quotes(tmp_path: Path) -> None:
    """The first run: llama.cpp still compiling (here: a model file that does not exist yet). The page shows
    the banner with the reason, and answers quoted from the sources, labelled as not written by a model."""
    import json

    from playwright.sync_api import expect, sync_playwright

    executable = ensure_chromium()
    status = tmp_path / "llama-build.json"
    status.write_text(json.dumps({"state": "building", "started_at": time.time() - 70, "expected_s": 540}))
    stack = start_stack(
        tmp_path,
        gateway_env={
            "LLM_PROVIDER": "llamacpp",
            "LLM_MODEL_PATH": str(tmp_path / "not-built.gguf"),
            "LLM_FALLBACK_PROVIDERS": "sources",
            "LLM_BUILD_STATUS_PATH": str(status),
        },
    )
    try:
        doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 700})
                page.goto(stack.bff.url)
                banner = page.locator("#status-banner")
                expect(banner).to_be_visible(timeout=10_000)
                expect(banner).to_contain_text("answers are quoted from your documents")
                expect(banner).to_contain_text("llama.cpp is being compiled")
                page.fill("#question", "How many days of paid leave do employees get?")
                page.click("#send-btn")
                answer = page.locator(".msg.assistant").nth(0)
                expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
                expect(answer).to_have_attribute("data-answered-by", "fallback_provider")
                expect(answer.locator(".notice")).to_contain_text("quoted word for word")
                expect(answer.locator(".answer")).to_contain_text("25 days of paid leave")
                expect(answer.locator(".citations li")).to_have_count(1)
                page.screenshot(path=str(ARTIFACTS / "degraded.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stack.stop()

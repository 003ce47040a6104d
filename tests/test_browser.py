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
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cairn_testing import free_port, wait_for

from .axe import assert_no_serious_violations
from .conftest import INTERNAL_TOKEN, Stack, start_stack

if TYPE_CHECKING:
    from playwright.sync_api import Page

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


@contextmanager
def chromium_page(width: int, height: int, *, clipboard_for: str | None = None) -> Iterator[Page]:
    """A page in a fresh headless Chromium (Debian's), closed with its browser afterwards; `clipboard_for`
    grants that origin the clipboard, for tests of Copy."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            if clipboard_for:
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=clipboard_for)
            yield context.new_page()
        finally:
            browser.close()


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
    from playwright.sync_api import expect

    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_page(1280, 860) as page:
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
        wait_for(
            lambda: _cancelled_generations(stack) > cancelled_before,
            "the gateway to see the cancel",
            10,
            0.1,
        )

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
        # Each model's manifest: the toy model's says it has no weights (docs/models.md).
        expect(page.locator("#models-table")).to_contain_text("no model weights")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_model_down_shows_an_unmistakable_fallback(tmp_path: Path) -> None:
    """The gateway's model server is unreachable: the page says so, with the reason code and the passages."""
    from playwright.sync_api import expect

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
        with chromium_page(1280, 700) as page:
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
        stack.stop()


def test_an_unsupported_answer_is_withdrawn_and_the_page_says_why(tmp_path: Path) -> None:
    """A real OpenAI-compatible server cites a real chunk but invents a number: the text it streamed is struck
    through, its citations go, and the notice names the number that the sources do not hold."""
    from cairn_testing import gateway_env, start_fake_openai
    from playwright.sync_api import expect

    fake = start_fake_openai()
    stack = start_stack(tmp_path, gateway_env=gateway_env(fake))
    try:
        doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with chromium_page(1280, 700) as page:
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
        stack.stop()
        fake.stop()


def test_a_model_that_is_not_there_yet_shows_a_banner_and_labelled_quotes(tmp_path: Path) -> None:
    """The first run: llama.cpp still compiling (here: a model file that does not exist yet). The page shows
    the banner with the reason, and answers quoted from the sources, labelled as not written by a model."""
    import json

    from playwright.sync_api import expect

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
        with chromium_page(1280, 700) as page:
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
        stack.stop()


def test_policy_warnings_show_beside_the_answer_and_the_audit_page_opens_it(tmp_path: Path) -> None:
    """A `warn` rule: the chat page shows its warning beside the answer. The audit page, behind the admin
    key, lists the answer, opens it with its question and sources, and checks the chain."""
    from playwright.sync_api import expect

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nrules:\n  - name: no-holidays\n    kind: blocked_terms\n    action: warn\n    terms: [holidays]\n"
    )
    stack = start_stack(tmp_path, {"CAIRN_ADMIN_TOKEN": "audit-admin", "QS_POLICY_FILE": str(policy)})
    try:
        doc = {"id": "leave", "title": "Leave policy", "text": HANDBOOK}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with chromium_page(1280, 800) as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(stack.bff.url)
            page.fill("#question", "How many days of paid leave do employees get?")
            page.click("#send-btn")
            answer = page.locator(".msg.assistant").nth(0)
            expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
            expect(answer.locator(".answer")).to_contain_text("25 days of paid leave")
            expect(answer.locator(".warnings")).to_be_visible()
            expect(answer.locator(".warnings")).to_contain_text(
                "The answer contains a blocked term: holidays. (no-holidays)"
            )

            page.goto(f"{stack.bff.url}/audit")
            page.fill("#admin-key", "wrong-key")
            page.click("#audit-search")
            expect(page.locator("#audit-status")).to_contain_text("UNAUTHORIZED")
            page.fill("#admin-key", "audit-admin")
            page.select_option("#f-outcome", "warn")
            page.click("#audit-search")
            rows = page.locator("#audit-table tbody tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("no-holidays (warn)")
            rows.first.click()
            dialog = page.locator("#record-dialog")
            expect(dialog).to_be_visible()
            expect(page.locator("#rec-question")).to_have_text(
                "How many days of paid leave do employees get?"
            )
            expect(page.locator("#rec-answer")).to_contain_text("25 days of paid leave")
            expect(page.locator("#rec-sources .source.cited")).to_contain_text("leave:0 (cited)")
            expect(page.locator("#rec-sources .source.cited .snippet")).to_contain_text(
                "Leave policy: Employees get 25 days"  # the Markdown heading is the chunk's section, not its text
            )
            page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)
            page.click("#rec-close")
            page.click("#audit-verify")
            expect(page.locator("#chain")).to_contain_text("Chain intact: 1 records")
            assert_no_serious_violations(page)  # with the list, the filters and a verdict on screen
            assert not errors, errors
    finally:
        stack.stop()


LOOKALIKES = [
    {
        "id": "brindlewick-mileage",
        "title": "Brindlewick mileage policy",
        "text": "Brindlewick Logistics reimburses business journeys made in a private car at 0.42 euros per "
        "kilometre. Claims are filed once a month in the travel tool.",
    },
    {
        "id": "corvale-mileage",
        "title": "Corvale mileage policy",
        "text": "Corvale Foods reimburses business journeys made in a private car at 0.38 euros per kilometre. "
        "Claims are filed once a month in the travel tool.",
    },
]


def test_conversations_follow_ups_reload_regenerate_rate_rename_delete(tmp_path: Path) -> None:
    """A two-turn conversation whose follow-up cites the right look-alike document; it survives a reload;
    the last answer is regenerated and rated; the chat is renamed, a new one started, and deleted."""
    from playwright.sync_api import expect

    # Three reloads, regenerate, ratings and renames pass the default burst of 30 requests: this test is
    # about conversations, not limits (a 429 left the chat list empty once under CI).
    stack = start_stack(tmp_path, {"CAIRN_ADMIN_TOKEN": "admin-test", "BFF_RATE_LIMIT_BURST": "500"})
    try:
        for doc in LOOKALIKES:
            assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (
                200,
                201,
            )
        with chromium_page(1280, 860, clipboard_for=stack.bff.url) as page:
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(stack.bff.url)

            def ask(question: str, n: int) -> Any:
                page.fill("#question", question)
                page.click("#send-btn")
                answer = page.locator(".msg.assistant").nth(n)
                expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
                return answer

            # The toy model quotes a sentence of the chunk it cites: what it cites is what is checked.
            first = ask("What is Brindlewick's mileage rate?", 0)
            expect(first.locator(".citations li")).to_have_text(
                ["Brindlewick mileage policy brindlewick-mileage:0"]
            )
            second = ask("And for Corvale?", 1)
            expect(second.locator(".citations li")).to_have_text(["Corvale mileage policy corvale-mileage:0"])
            answer_text = second.locator(".answer").inner_text()
            chats = page.locator("#conv-list .conv")
            expect(chats).to_have_count(1)
            expect(chats.first).to_contain_text("What is Brindlewick's mileage rate?")
            assert "#c=" in page.url

            # Copy puts the answer's text on the clipboard.
            second.locator(".act.copy").click()
            expect(second.locator(".act.copy")).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == answer_text.replace(
                "[1]", "[corvale-mileage:0]"
            )

            # A reload keeps the conversation, its citations and its order.
            page.reload()
            expect(page.locator(".msg.user")).to_have_count(2)
            expect(page.locator(".msg.assistant")).to_have_count(2)
            restored = page.locator(".msg.assistant").nth(1)
            expect(restored.locator(".answer")).to_have_text(answer_text)
            expect(restored.locator(".citations li")).to_contain_text("Corvale mileage policy")
            expect(page.locator(".msg.assistant").nth(0).locator(".act.regenerate")).to_be_hidden()
            assert_no_serious_violations(page)  # the chat page with a conversation, its answers and actions

            # Regenerate the last answer: still two answers, the last one new.
            restored.locator(".act.regenerate").click()
            expect(page.locator(".msg.assistant")).to_have_count(2)
            regenerated = page.locator(".msg.assistant").nth(1)
            expect(regenerated).to_have_attribute("data-state", "done", timeout=30_000)
            expect(regenerated.locator(".citations li")).to_contain_text("Corvale mileage policy")

            # Rate it down with a comment; the rating is there after a reload.
            regenerated.locator(".act.rate-down").click()
            expect(regenerated.locator(".act.rate-down")).to_have_attribute("aria-pressed", "true")
            regenerated.locator(".comment").fill("Too terse")
            regenerated.locator(".comment-form button").click()
            expect(regenerated.locator(".rate-status")).to_have_text("Thanks for the comment.")
            page.reload()
            expect(page.locator(".msg.assistant")).to_have_count(2)
            expect(page.locator(".msg.assistant").nth(1).locator(".act.rate-down")).to_have_attribute(
                "aria-pressed", "true"
            )
            feedback = httpx.get(
                f"{stack.query.url}/admin/feedback",
                headers={"X-Cairn-Internal-Token": INTERNAL_TOKEN, "Authorization": "Bearer admin-test"},
                timeout=10,
            ).json()
            assert [(f["rating"], f["comment"]) for f in feedback["feedback"]] == [("down", "Too terse")]

            # Rename, then a new chat, then delete the first one.
            page.locator("#conv-list .conv-rename").first.click()
            page.fill(".conv-title-input", "Mileage rates")
            page.press(".conv-title-input", "Enter")
            expect(page.locator("#conv-list .conv").first).to_contain_text("Mileage rates")
            page.click("#new-chat")
            expect(page.locator(".msg")).to_have_count(0)
            ask("What is Corvale's mileage rate?", 0)
            expect(page.locator("#conv-list .conv")).to_have_count(2)
            page.locator("#conv-list .conv", has_text="Mileage rates").locator(".conv-delete").click()
            expect(page.locator("#conv-list .conv")).to_have_count(1)
            expect(page.locator(".msg.assistant")).to_have_count(1)  # the open chat is the other one
            page.screenshot(path=str(ARTIFACTS / "conversations.png"), full_page=True)
            assert not errors, errors
    finally:
        stack.stop()


# --- issue 14: Markdown answers, the chunk dialog's highlight, uploads, the documents list, 375 px -----------------


def _watch_errors(page: Any) -> list[str]:
    """Uncaught exceptions and console errors (a CSP violation is one) on `page`, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def test_a_markdown_answer_renders_and_html_in_it_stays_inert(tmp_path: Path) -> None:
    """The model answers in Markdown with a <script> and an <img onerror> in it: lists, bold and code render,
    the HTML shows as text and never runs; the cited chunk opens with the sentences the answer used marked."""
    from cairn_testing import start_server
    from cairn_testing.fake_openai import MARKDOWN_ANSWER
    from playwright.sync_api import expect

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
        # The document says what the model will say, so the answer passes QS's support check.
        doc = {"id": "badge", "title": "Badge rules", "text": MARKDOWN_ANSWER}
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code in (200, 201)
        with chromium_page(1280, 800) as page:
            errors = _watch_errors(page)
            page.goto(stack.bff.url)
            page.fill("#question", "What are the badge rules at the gate? [[markdown]]")
            page.click("#send-btn")
            answer = page.locator(".msg.assistant").nth(0)
            expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
            body = answer.locator(".answer")
            expect(body.locator("p strong")).to_have_text("wear the badge")
            expect(body.locator("p code")).to_have_text("door-7")
            expect(body.locator("ul > li")).to_have_count(2)
            expect(body.locator("ol > li")).to_have_text(["Report a lost badge to the front desk."])
            expect(body.locator(".ref")).to_have_text(["[1]"])
            # The HTML is there as text, and nothing of it became an element or ran.
            expect(body.locator("ul > li").first).to_contain_text("<script>window.__pwned=1</script>")
            expect(body.locator("ul > li").nth(1)).to_contain_text('<img src=x onerror="window.__pwned=2">')
            assert body.locator("script, img").count() == 0
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert "**" not in body.inner_text()

            # The citation opens the chunk with the answer's sentences marked.
            body.locator(".ref").click()
            expect(page.locator("#chunk-dialog")).to_be_visible()
            marks = page.locator("#chunk-text mark")
            # The stored chunk is clean text (markup is normalised at ingest): no ** or ` in what is marked.
            expect(marks.first).to_have_text(
                "Badge rules: wear the badge at all times and use door-7 for the lab."
            )
            # The answer's other sentences (the list items) are marked too; how many depends on how the
            # normalised chunk splits the list, so at least the sentence and two items.
            assert marks.count() >= 3, marks.all_inner_texts()
            assert page.locator("#chunk-text script").count() == 0
            page.screenshot(path=str(ARTIFACTS / "markdown-chunk.png"))
            page.click("#chunk-close")
            page.screenshot(path=str(ARTIFACTS / "markdown.png"), full_page=True)
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert not errors, errors
    finally:
        stack.stop()
        fake.stop()


def test_a_multi_file_upload_shows_progress_and_each_refusal_beside_its_file(tmp_path: Path) -> None:
    """Three files picked at once, one of a type QS refuses; then three dropped on the drop zone, one too
    large and one with no text. Each file gets its own progress bar and, when refused, the server's reason."""
    from playwright.sync_api import expect

    stack = start_stack(tmp_path, {"QS_MAX_UPLOAD_BYTES": "20000"})
    files = tmp_path / "files"
    files.mkdir()
    (files / "handbook.md").write_text(HANDBOOK)
    (files / "vpn.txt").write_text("The VPN uses WireGuard; ask IT for a profile.\n")
    (files / "setup.exe").write_bytes(b"MZ\x90\x00" + bytes(200))
    try:
        with chromium_page(1280, 860) as page:
            errors = _watch_errors(page)
            page.goto(stack.bff.url)
            expect(page.locator("#doc-list")).to_contain_text("No documents yet")
            page.set_input_files(
                "#file-input", [str(files / n) for n in ("handbook.md", "setup.exe", "vpn.txt")]
            )
            page.click("#upload-btn")
            status = page.locator("#upload-status")
            expect(status).to_have_text("Added 2 of 3 files; 1 refused (see below).", timeout=20_000)
            rows = page.locator("#upload-list .upload")
            expect(rows).to_have_count(3)
            expect(rows.locator(".upload-name")).to_have_text(["handbook.md", "setup.exe", "vpn.txt"])
            expect(rows.nth(0)).to_have_attribute("data-state", "done")
            expect(rows.nth(2)).to_have_attribute("data-state", "done")
            expect(rows.nth(1)).to_have_attribute("data-state", "error")
            expect(rows.nth(1).locator(".error")).to_contain_text(
                "UNSUPPORTED_MEDIA_TYPE: Unsupported file type 'setup.exe'"
            )
            assert rows.locator("progress").evaluate_all("bars => bars.map(b => b.value)") == [1, 1, 1]
            expect(page.locator("#doc-list .doc")).to_have_count(2)

            # Dropped on the zone: too large for QS_MAX_UPLOAD_BYTES, no text at all, and a good one.
            page.evaluate(
                """() => {
                    const dt = new DataTransfer();
                    dt.items.add(new File(["x ".repeat(15000)], "huge.txt", {type: "text/plain"}));
                    dt.items.add(new File(["   \\n"], "blank.txt", {type: "text/plain"}));
                    dt.items.add(new File(["Parking spots are assigned by lottery."], "parking.md"));
                    const zone = document.getElementById("drop-zone");
                    zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
                    zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
                }"""
            )
            expect(status).to_have_text("Added 1 of 3 files; 2 refused (see below).", timeout=20_000)
            expect(rows.locator(".upload-msg")).to_have_text(
                [
                    "PAYLOAD_TOO_LARGE: The file exceeds the limit of 20000 bytes.",
                    "BAD_REQUEST: No text could be extracted from 'blank.txt'.",
                    "added (1 chunks)",
                ]
            )
            expect(page.locator("#doc-list .doc")).to_have_count(3)
            page.screenshot(path=str(ARTIFACTS / "uploads.png"), full_page=True)
            # Chromium logs each refused request; those three are expected, nothing else is.
            refused = "Failed to load resource: the server responded with a status of "
            assert sorted(e.removeprefix(refused)[:3] for e in errors if e.startswith(refused)) == [
                "400",
                "413",
                "415",
            ], errors
            assert not [e for e in errors if not e.startswith(refused)], errors
    finally:
        stack.stop()


def test_the_documents_list_searches_pages_and_picks_a_collection(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    # 25 uploads and the page's own calls pass the default burst of 30: this test is about the list, not limits.
    stack = start_stack(tmp_path, {"BFF_RATE_LIMIT_BURST": "500"})
    try:
        for i in range(25):
            doc = {
                "id": f"memo-{i:02d}",
                "title": f"Memo {i:02d}" if i % 5 else f"Travel memo {i:02d}",
                "collection": "travel" if i % 5 == 0 else "office",
                "text": f"Memo number {i} is about the office and its rules.",
            }
            assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code == 201
        with chromium_page(1280, 1000) as page:
            errors = _watch_errors(page)
            page.goto(stack.bff.url)
            docs = page.locator("#doc-list .doc")
            expect(docs).to_have_count(20)
            expect(docs.first).to_contain_text("Memo 24")
            expect(page.locator("#doc-page")).to_have_text("1–20 of 25")
            expect(page.locator("#doc-prev")).to_be_disabled()
            page.click("#doc-next")
            expect(docs).to_have_count(5)
            expect(page.locator("#doc-page")).to_have_text("21–25 of 25")
            expect(page.locator("#doc-next")).to_be_disabled()
            page.click("#doc-prev")
            expect(docs).to_have_count(20)

            expect(page.locator("#doc-collection option")).to_have_text(
                ["All collections", "office (20)", "travel (5)"]
            )
            page.select_option("#doc-collection", "travel")
            expect(docs).to_have_count(5)
            page.fill("#doc-search", "MEMO 1")
            expect(docs.locator(".doc-title")).to_have_text(["Travel memo 15", "Travel memo 10"])
            page.select_option("#doc-collection", "")
            expect(docs).to_have_count(10)
            page.fill("#doc-search", "nothing like this")
            expect(page.locator("#doc-list")).to_contain_text("No documents match.")
            page.fill("#doc-search", "")
            expect(docs).to_have_count(20)
            page.screenshot(path=str(ARTIFACTS / "documents.png"), full_page=True)
            assert not errors, errors
    finally:
        stack.stop()


def test_the_page_is_usable_375_px_wide(tmp_path: Path) -> None:
    """A phone's width: one column, no sideways scrolling, the question box and the send button in the first
    screen, the answer and the documents list below it."""
    import struct

    from playwright.sync_api import expect

    stack = start_stack(tmp_path)
    try:
        doc = {
            "id": "leave-policy-with-a-rather-long-identifier-that-does-not-break",
            "title": "Leave-policy-handbook-2026-final-version-approved-by-the-works-council",
            "text": HANDBOOK,
        }
        assert httpx.post(f"{stack.bff.url}/api/documents", json=doc, timeout=30).status_code == 201
        with chromium_page(375, 740) as page:
            errors = _watch_errors(page)
            page.goto(stack.bff.url)
            expect(page.locator("#doc-list .doc")).to_have_count(1)
            for sel in ("#question", "#send-btn"):
                expect(page.locator(sel)).to_be_visible()
                box = page.locator(sel).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (sel, box)
                assert box["y"] + box["height"] <= 740, (sel, box)  # in the first screen
            page.fill("#question", "How many days of paid leave do employees get?")
            page.click("#send-btn")
            answer = page.locator(".msg.assistant").nth(0)
            expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
            expect(answer.locator(".answer")).to_contain_text("25 days of paid leave")
            expect(answer.locator(".citations li")).to_have_count(1)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            page.locator("#doc-list").scroll_into_view_if_needed()
            expect(page.locator("#doc-list .doc-title")).to_be_visible()
            expect(page.locator("#drop-zone")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            shot = page.screenshot(path=str(ARTIFACTS / "narrow-375.png"), full_page=True)
            width, height = struct.unpack(">II", shot[16:24])  # the PNG's IHDR: no sideways overflow
            assert width == 375 and height >= 740, (width, height)
            assert not errors, errors
    finally:
        stack.stop()


def test_the_markdown_renderer_and_the_chunk_marks_in_the_page(stack: Stack) -> None:
    """markdown.js and highlight.js as the page loads them, on the cases a model's text brings."""
    with chromium_page(1280, 720) as page:
        errors = _watch_errors(page)
        page.goto(stack.bff.url)
        render = """(text) => {
            const box = document.createElement("div");
            Cairn.renderMarkdown(box, text, (id) => id === "known:0" ? Object.assign(
                document.createElement("button"), {className: "ref", textContent: "[1]"}) : null);
            return box.innerHTML;
        }"""
        cases = {
            "a **b `c`** d": "<p>a <strong>b <code>c</code></strong> d</p>",
            "**not closed and `not code": "<p>**not closed and `not code</p>",
            "`**not bold**` and [known:0] [other:1]": (
                '<p><code>**not bold**</code> and <button class="ref">[1]</button> [other:1]</p>'
            ),
            "one\ntwo\n\nthree": "<p>one\ntwo</p><p>three</p>",
            "- a\n  still a\n* b\n\n3) c\n4. d": (
                '<ul><li>a\nstill a</li><li>b</li></ul><ol start="3"><li>c</li><li>d</li></ol>'
            ),
            "<b>x</b> & <script>alert(1)</script>": (
                "<p>&lt;b&gt;x&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;</p>"
            ),
            "": "",
        }
        for text, html in cases.items():
            assert page.evaluate(render, text) == html, text
        # One pass over the text: a 300 KB answer with every construct renders in well under a second.
        elapsed = page.evaluate(
            """() => {
                const text = "Some **bold** and `code` [known:0].\\n- item *\\n".repeat(6000);
                const t0 = performance.now();
                Cairn.renderMarkdown(document.createElement("div"), text, () => null);
                return performance.now() - t0;
            }"""
        )
        assert elapsed < 1000, elapsed
        marked = page.evaluate(
            """() => {
                const pre = document.createElement("pre");
                const chunk = "Intro line. Employees get 25 days of paid leave.\\n\\n1. Ask   your MANAGER first.";
                const n = Cairn.showChunkText(pre, chunk, "They get **25 days** of paid leave [x:0]. " +
                    "Employees get 25 days of paid leave. Ask your manager first.");
                return [n, [...pre.querySelectorAll("mark")].map((m) => m.textContent), pre.textContent];
            }"""
        )
        assert marked == [
            2,
            ["Employees get 25 days of paid leave.", "1. Ask   your MANAGER first."],
            "Intro line. Employees get 25 days of paid leave.\n\n1. Ask   your MANAGER first.",
        ]
        assert not errors, errors

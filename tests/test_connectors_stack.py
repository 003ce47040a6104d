"""Connector sources through the BFF (real gateway, QS and BFF processes): `/api/connectors` takes the admin key
only, forwards to QS's `/v1/connectors`, and the page's Sources section lists, adds and runs a folder source
whose file then answers a question in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Stack, start_stack
from .test_browser import ARTIFACTS, chromium_page

ADMIN_KEY = "sources-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"CAIRN_ADMIN_TOKEN": ADMIN_KEY, "QS_CONNECTORS_TICK_S": "0.2"}
    s = start_stack(tmp_path_factory.mktemp("sources"), env)
    yield s
    s.stop()


def test_api_connectors_take_the_admin_key_only_and_reach_qs(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "ibis.md").write_text("The ibis survey counts birds every spring.\n")
    bff = stack.bff.url
    # The page's local mode, and a wrong key, are refused: a source makes QS read its own disk.
    assert httpx.get(f"{bff}/api/connectors").status_code == 401
    assert httpx.get(f"{bff}/api/connectors", headers={"Authorization": "Bearer nope"}).status_code == 401
    with httpx.Client(base_url=bff, headers=ADMIN, timeout=30) as client:
        body = {"name": "ibis", "kind": "folder", "config": {"path": str(tmp_path)}, "interval_s": 0}
        assert client.post("/api/connectors", json=body).status_code == 201
        ran = client.post("/api/connectors/ibis/run", params={"wait": "true"})
        assert ran.status_code == 200 and ran.json()["status"]["added"] == 1, ran.text
        assert client.get("/api/connectors/ibis/status").json()["status"]["state"] == "ok"
        patched = client.patch("/api/connectors/ibis", json={"enabled": False})
        assert patched.status_code == 200 and patched.json()["enabled"] is False
        assert client.get("/api/connectors").json()["sources"][0]["documents"] == 1
    hits = httpx.post(f"{bff}/api/search", json={"query": "ibis survey"}, timeout=30).json()["results"]
    assert hits[0]["metadata"] == {"source": "ibis", "path": "ibis.md"}
    gone = httpx.delete(f"{bff}/api/connectors/ibis", headers=ADMIN, timeout=30).json()
    assert gone["documents_deleted"] == 1


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_adds_a_folder_source_runs_it_and_answers_from_it(stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "quokka.md").write_text("The quokka enclosure opens at nine in the morning.\n")
    with chromium_page(1280, 900) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(stack.bff.url)
        page.click("#sources summary")
        expect(page.locator("#src-status")).to_contain_text("admin key")
        page.fill("#src-admin-key", ADMIN_KEY)
        page.dispatch_event("#src-admin-key", "change")
        expect(page.locator("#src-status")).to_contain_text("No sources yet")
        page.fill("#src-name", "share")
        page.select_option("#src-kind", "folder")
        page.fill("#src-target", str(folder))
        page.fill("#src-collection", "share")
        page.click("#src-add")
        item = page.locator('#src-list li[data-name="share"]')
        expect(item).to_have_attribute("data-state", "ok", timeout=20_000)
        expect(item.locator(".src-status")).to_contain_text("1 added")
        expect(page.locator("#doc-list")).to_contain_text("quokka.md")  # the documents list followed
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "sources.png"), full_page=True)
        page.fill("#question", "When does the quokka enclosure open?")
        page.click("#send-btn")
        answer = page.locator(".msg.assistant").nth(0)
        expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
        expect(answer.locator(".answer")).to_contain_text("nine in the morning")
        assert not errors, errors

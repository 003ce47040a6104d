"""Folder sync against a real QS and a real toy gateway: files added, changed, touched, renamed and deleted
while QS runs are reflected in search and chat within one sync interval, and nothing is embedded twice."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_query.connectors.sync import document_id
from cairn_testing import ServerProcess

from .conftest import start_qs
from .connector_helpers import FAST, admin, embedded, next_run, paths_found, texts_of

INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def qs(toy_gateway: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    roots = {"QS_CONNECTORS_FOLDER_ROOTS": str(tmp_path_factory.getbasetemp())}
    srv = start_qs(toy_gateway.url, tmp_path_factory.mktemp("qs-folder") / "qs.sqlite3", **FAST, **roots)
    yield srv
    srv.stop()


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_folder_sync_reflects_every_change_and_embeds_nothing_twice(
    qs: ServerProcess, tmp_path: Path
) -> None:
    root = tmp_path / "share"
    _write(root, "falcon.md", "# Falcon\n\nThe falcon project ships on Tuesday.\n")
    _write(root, "heron.txt", "The heron budget is forty thousand euros.\n")
    _write(root, "notes/osprey.rst", "Osprey\n======\n\nThe osprey team meets in room twelve.\n")
    _write(root, ".hidden.md", "The kestrel secret is hidden.\n")
    (root / "picture.png").write_bytes(b"\x89PNG not a document")
    with admin(qs) as client:
        # The schedule alone (no watcher): what a network mount without file events gets.
        body = {"name": "share", "kind": "folder", "config": {"path": str(root), "watch": False}}
        created = client.post(
            "/v1/connectors", json={**body, "collection": "share", "interval_s": INTERVAL_S}
        )
        assert created.status_code == 201, created.text
        first = next_run(client, "share", None)
        assert (first["state"], first["seen"], first["added"], first["failed"]) == ("ok", 3, 3, 0)
        assert paths_found(client, "falcon ships", "share")[0] == "falcon.md"
        assert "kestrel" not in str(client.post("/v1/search", json={"query": "kestrel secret"}).json())
        listed = client.get("/v1/connectors").json()["sources"]
        assert [(s["name"], s["documents"], s["running"]) for s in listed] == [("share", 3, False)]

        # Nothing changed: the next scheduled runs read nothing and embed nothing.
        before = embedded(qs)
        quiet = next_run(client, "share", first["id"], timeout_s=INTERVAL_S + 10)
        assert (quiet["trigger"], quiet["unchanged"], quiet["added"], quiet["changed"]) == (
            "schedule",
            3,
            0,
            0,
        )

        # Touched (new mtime, same bytes) and renamed: no parse, no embedding.
        os.utime(root / "heron.txt", (1_000_000, 1_000_000))
        shutil.move(root / "notes/osprey.rst", root / "notes/sea-eagle.rst")
        moved = next_run(client, "share", quiet["id"], timeout_s=INTERVAL_S + 10)
        assert (moved["renamed"], moved["unchanged"], moved["added"], moved["deleted"]) == (1, 2, 0, 0)
        assert embedded(qs) == before, "a rename or a touch embedded something"
        found = paths_found(client, "osprey team room", "share")
        assert found[0] == "notes/sea-eagle.rst" and "notes/osprey.rst" not in found

        # Changed, added and deleted: only the changed and the new file are embedded, once.
        _write(root, "falcon.md", "# Falcon\n\nThe falcon project ships on Friday after the review.\n")
        _write(root, "plover.md", "The plover office is on the third floor.\n")
        (root / "heron.txt").unlink()
        changed = next_run(client, "share", moved["id"], timeout_s=INTERVAL_S + 10)
        assert (changed["changed"], changed["added"], changed["deleted"], changed["renamed"]) == (1, 1, 1, 0)
        ids = [document_id("share", "falcon.md"), document_id("share", "plover.md")]
        assert embedded(qs) - before == texts_of(client, ids)
        assert "heron.txt" not in paths_found(client, "heron budget euros", "share")
        assert paths_found(client, "plover office floor", "share")[0] == "plover.md"

        question = {"query": "When does the falcon project ship?", "collection": "share"}
        answer = client.post("/v1/chat", json=question).json()
        assert answer["status"] == "ok" and "Friday" in answer["answer"], answer
        assert answer["citations"][0]["chunk_id"].startswith(document_id("share", "falcon.md"))


def test_a_watched_folder_syncs_on_file_events_long_before_its_schedule(
    qs: ServerProcess, tmp_path: Path
) -> None:
    root = tmp_path / "watched"
    _write(root, "one.md", "The first watched note mentions albatross.\n")
    with admin(qs) as client:
        body = {"name": "watched", "kind": "folder", "config": {"path": str(root)}, "interval_s": 3600}
        assert client.post("/v1/connectors", json={**body, "collection": "watched"}).status_code == 201
        first = next_run(client, "watched", None)  # never run: due at once
        assert first["added"] == 1
        _write(root, "two.md", "The second watched note mentions cormorant.\n")
        run = next_run(client, "watched", first["id"], timeout_s=10)
        assert run["trigger"] == "watch" and run["added"] == 1
        assert paths_found(client, "cormorant", "watched")[0] == "two.md"


def test_an_unreadable_folder_fails_the_run_and_deletes_nothing(qs: ServerProcess, tmp_path: Path) -> None:
    root = tmp_path / "mount"
    _write(root, "kept.md", "The gannet report is kept while the mount is away.\n")
    with admin(qs) as client:
        body = {"name": "mount", "kind": "folder", "config": {"path": str(root), "watch": False}}
        assert (
            client.post("/v1/connectors", json={**body, "interval_s": 0, "collection": "mount"}).status_code
            == 201
        )
        ran = client.post("/v1/connectors/mount/run", params={"wait": "true"}).json()
        assert ran["started"] and ran["status"]["added"] == 1
        shutil.rmtree(root)
        failed = client.post("/v1/connectors/mount/run", params={"wait": "true"}).json()["status"]
        assert failed["state"] == "failed" and failed["error"]["reason_code"] == "SOURCE_UNAVAILABLE"
        assert failed["deleted"] == 0
        assert paths_found(client, "gannet report", "mount") == ["kept.md"]
        # Deleting the source deletes its documents too.
        gone = client.delete("/v1/connectors/mount").json()
        assert gone == {"name": "mount", "deleted": True, "documents_deleted": 1}
        assert paths_found(client, "gannet report", "mount") == []
        assert client.get("/v1/connectors/mount").json()["reason_code"] == "NOT_FOUND"


def test_connectors_need_the_admin_token_and_a_valid_config(qs: ServerProcess) -> None:
    assert httpx.get(f"{qs.url}/v1/connectors").status_code == 401
    with admin(qs) as client:
        bad = client.post("/v1/connectors", json={"name": "x", "kind": "folder", "config": {}})
        assert bad.status_code == 400 and "config.path" in bad.json()["message"]
        assert (
            client.post("/v1/connectors", json={"name": "x", "kind": "ftp", "config": {}}).status_code == 400
        )
        # QS_CONNECTORS_FOLDER_ROOTS (set for this QS) bounds what a folder source may read.
        outside = client.post(
            "/v1/connectors", json={"name": "etc", "kind": "folder", "config": {"path": "/etc"}}
        )
        assert outside.status_code == 400 and "QS_CONNECTORS_FOLDER_ROOTS" in outside.json()["message"]
        missing = client.post("/v1/connectors/none/run")
        assert missing.status_code == 404 and missing.json()["reason_code"] == "NOT_FOUND"

"""The connector tables on both backends (SQLite and a real PostgreSQL), and a whole folder sync by a real QS on
PostgreSQL, with two QS replicas sharing the database: one runs the source."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cairn_query.store import Store
from cairn_query.store.connectors import ItemRow, SourceRow
from cairn_testing import PostgresServer, ServerProcess

from .conftest import start_qs
from .connector_helpers import FAST, admin, embedded, next_run, paths_found, wait_for


def _source(name: str = "s") -> SourceRow:
    return SourceRow(name, "folder", {"path": "/x"}, "default", 60.0, True, {}, "", "")


def test_sources_and_items_round_trip_on_both_backends(store: Store) -> None:
    table = store.connectors
    assert table.create(_source()) and not table.create(_source())  # a name is taken once
    table.set_status("s", {"state": "ok", "added": 2})
    row = table.get("s")
    assert row is not None and row.config == {"path": "/x"} and row.status == {"state": "ok", "added": 2}
    assert row.enabled is True and row.interval_s == 60.0
    table.put_item("s", ItemRow("a.md", "doc-a", "v1", "h1", ".md", {"etag": "e"}))
    table.put_item("s", ItemRow("a.md", "doc-a", "v2", "h2", ".md", {}))  # replaces
    items = table.items("s")
    assert list(items) == ["a.md"] and items["a.md"].version == "v2"
    assert items["a.md"].present is False  # no document doc-a in the store
    assert table.document_ids("s") == ["doc-a"]
    assert table.delete("s") and table.items("s") == {} and table.get("s") is None


def test_the_run_lease_has_one_holder_until_it_is_released_or_lapses(store: Store) -> None:
    table = store.connectors
    table.create(_source())
    assert table.take_lease("s", "replica-1", 60)
    assert not table.take_lease("s", "replica-2", 60)  # held
    assert table.take_lease("s", "replica-1", 60)  # renewed by its holder
    assert table.lease_holder("s") == "replica-1"
    table.release_lease("s", "replica-2")  # not the holder's: nothing happens
    assert table.lease_holder("s") == "replica-1"
    table.release_lease("s", "replica-1")
    assert table.lease_holder("s") is None and table.take_lease("s", "replica-2", 0.05)
    time.sleep(0.1)  # replica-2 died mid-run: its lease lapses
    assert table.lease_holder("s") is None and table.take_lease("s", "replica-1", 60)


def test_two_replicas_on_postgres_asked_at_once_sync_a_folder_once(
    toy_gateway: ServerProcess, pg_server: PostgresServer, tmp_path: Path
) -> None:
    url = pg_server.url("connectors_replicas")
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(12):  # enough files that two runs at once would overlap for seconds
        (root / f"bird{i}.md").write_text(f"Bird number {i} is a tern that migrates in month {i}.\n")
    unused = Path("/nonexistent/unused.sqlite3")
    replicas = [start_qs(toy_gateway.url, unused, QS_STORE_URL=url, **FAST) for _ in range(2)]
    try:
        with admin(replicas[0]) as one, httpx.Client(base_url=replicas[1].url, headers=one.headers) as two:
            body = {"name": "docs", "kind": "folder", "config": {"path": str(root), "watch": False}}
            assert (
                one.post("/v1/connectors", json={**body, "interval_s": 0, "collection": "pg"}).status_code
                == 201
            )
            # Both replicas are asked to run it at the same moment, several times: one wins the lease.
            with ThreadPoolExecutor(8) as pool:
                asks = [pool.submit(c.post, "/v1/connectors/docs/run") for c in (one, two) * 4]
                started = sum(f.result().json()["started"] for f in asks)
            assert started >= 1
            run = next_run(two, "docs", None, timeout_s=60)  # the other replica sees the same status
            assert (run["state"], run["added"]) == ("ok", 12), run
            wait_for(lambda: not two.get("/v1/connectors/docs").json()["running"], 30, "the runs to end")
            # One text per one-sentence file, embedded by one replica once.
            texts = sum(embedded(r) for r in replicas)
            assert texts == 12, f"{texts} texts embedded for twelve one-chunk files"
            assert paths_found(two, "bird number 7 tern", "pg")[0] == "bird7.md"
    finally:
        for r in replicas:
            r.stop()

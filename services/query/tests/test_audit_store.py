"""The audit table on both store backends: append-only rows on a hash chain that `verify_chain` checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cairn_query.settings import QuerySettings
from cairn_query.store import Store, open_store
from cairn_query.store.audit import GENESIS, AuditQuery, ChainReport, verify_chain


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "a.sqlite3")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture()
def store(target: str) -> Iterator[Store]:
    s = open_store(QuerySettings(store_url=target))
    yield s
    s.close()


def entry(i: int, at: str = "2026-12-01T10:00:00.000Z", **extra: object) -> dict[str, object]:
    return {
        "at": at,
        "kind": "answer",
        "outcome": "ok",
        "reason_code": None,
        "request_id": f"r{i}",
        "question": f"question {i}",
        "answer": f"answer {i}",
        **extra,
    }


def verify(store: Store) -> ChainReport:
    rows, anchor, head = store.audit.chain()
    return verify_chain(rows, anchor, head)


def sql(target: str, statement: str) -> None:
    """Tamper with the table behind the store's back, as someone with access to the database could."""
    if target.startswith("postgresql://"):
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(statement)
    else:
        with sqlite3.connect(target) as conn:
            conn.execute(statement)


def test_records_chain_and_filter(store: Store) -> None:
    for i in range(5):
        store.audit.append(entry(i))
    store.audit.append(entry(5, outcome="fallback", reason_code="POLICY_REJECTED", answer="withheld"))
    report = verify(store)
    assert report.ok and report.records == 6 and report.anchor == GENESIS
    newest = store.audit.find(AuditQuery(limit=2))
    assert [r.record()["request_id"] for r in newest] == ["r5", "r4"]
    older = store.audit.find(AuditQuery(limit=2, after_id=newest[-1].id))
    assert [r.record()["request_id"] for r in older] == ["r3", "r2"]
    rejected = store.audit.find(AuditQuery(reason_code="POLICY_REJECTED"))
    assert [r.record()["request_id"] for r in rejected] == ["r5"]
    assert [r.record()["request_id"] for r in store.audit.find(AuditQuery(q="QUESTION 3"))] == ["r3"]


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("UPDATE audit SET body = REPLACE(body, 'answer 2', 'answer 9') WHERE request_id = 'r2'", "changed"),
        ("DELETE FROM audit WHERE request_id = 'r2'", "removed or replaced"),
        ("DELETE FROM audit WHERE request_id = 'r0'", "removed or replaced"),
        ("DELETE FROM audit WHERE request_id = 'r4'", "after the last one"),
        ("UPDATE audit SET outcome = 'ok', reason_code = NULL WHERE request_id = 'r3'", "columns differ"),
    ],
)
def test_verify_finds_tampering(store: Store, target: str, statement: str, problem: str) -> None:
    for i in range(5):
        fallback = {"outcome": "fallback", "reason_code": "NO_CONTEXT"} if i == 3 else {}
        store.audit.append(entry(i, **fallback))
    assert verify(store).ok
    sql(target, statement)
    report = verify(store)
    assert not report.ok and problem in (report.problem or "")


def test_retention_removes_whole_days_and_keeps_the_chain_whole(store: Store) -> None:
    for i in range(3):
        store.audit.append(entry(i, at=f"2026-11-0{i + 1}T12:00:00.000Z"))
    store.audit.append(entry(3, at="2026-12-03T09:00:00.000Z"))
    retention = {
        "at": "2026-12-04T00:00:01.000Z",
        "kind": "retention",
        "outcome": "retention",
        "reason_code": None,
    }
    assert store.audit.purge_before("2026-11-03T00:00:00.000Z", retention) == 2
    report = verify(store)
    assert report.ok and report.records == 3 and report.anchor != GENESIS
    rows = list(store.audit.chain()[0])
    assert [r.record().get("request_id") for r in rows] == ["r2", "r3", None]
    assert rows[-1].record()["removed"] == 2 and rows[-1].kind == "retention"
    # Nothing older left: a second run removes nothing and adds no record.
    assert store.audit.purge_before("2026-11-03T00:00:00.000Z", retention) == 0
    assert store.audit.count() == 2


def test_conversations_and_ratings_on_both_backends(store: Store) -> None:
    table = store.conversations
    conv = table.create("key:a", "New chat")
    assert table.add_message("key:a", conv["id"], "user", "How long is leave?")
    assert table.add_message("key:a", conv["id"], "assistant", "25 days.", "rid-1", {"status": "ok"})
    assert not table.add_message("key:b", conv["id"], "user", "not mine")  # another owner's: nothing written
    assert table.get("key:b", conv["id"]) is None
    table.rate("rid-1", "key:a", "up", None)
    table.rate("rid-1", "key:a", "down", "vague")  # the second rating replaces the first
    got = table.get("key:a", conv["id"])
    assert got is not None and [m["role"] for m in got["messages"]] == ["user", "assistant"]
    assert (got["messages"][1]["status"], got["messages"][1]["rating"]) == ("ok", "down")
    rows, counts = table.feedback(None, 10, 0)
    assert [(r["request_id"], r["comment"]) for r in rows] == [("rid-1", "vague")] and counts == {"down": 1}
    table.drop_last_answer("key:a", conv["id"])
    assert [m["role"] for m in table.get("key:a", conv["id"])["messages"]] == ["user"]  # type: ignore[index]
    assert table.rename("key:a", conv["id"], "Leave") and not table.rename("key:b", conv["id"], "x")
    assert table.of_owner("key:a", 10, 0)[0][0]["title"] == "Leave" and table.of_owner("key:b", 10, 0)[1] == 0
    assert not table.delete("key:b", conv["id"]) and table.delete("key:a", conv["id"])
    assert table.get("key:a", conv["id"]) is None

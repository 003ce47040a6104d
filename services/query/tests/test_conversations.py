"""Conversations and ratings against real QS and gateway processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from cairn_testing import ServerProcess

from .conftest import ADMIN, DOCS, sse, start_gateway, start_qs

ALICE = {"X-Cairn-Owner": "key:alice"}
BOB = {"X-Cairn-Owner": "key:bob"}


def call(
    qs: ServerProcess, method: str, path: str, owner: dict[str, str] = ALICE, **kw: Any
) -> httpx.Response:
    return httpx.request(
        method, f"{qs.url}{path}", headers={**owner, **kw.pop("headers", {})}, timeout=30, **kw
    )


def test_a_conversation_keeps_its_turns_and_belongs_to_its_owner(qs: ServerProcess) -> None:
    conv = call(qs, "POST", "/v1/conversations", json={}).json()
    assert conv["title"] == "New chat" and conv["messages"] == 0
    path = f"/v1/conversations/{conv['id']}"
    first = call(
        qs, "POST", f"{path}/messages", json={"content": "How many days of paid leave do employees get?"}
    )
    assert first.status_code == 200 and first.json()["status"] == "ok" and "25 days" in first.json()["answer"]
    stream = call(
        qs, "POST", f"{path}/messages", json={"content": "When does the office close?", "stream": True}
    )
    assert sse(stream.text)[-1][1]["status"] == "ok"
    got = call(qs, "GET", path).json()
    assert got["title"] == "How many days of paid leave do employees get?"  # the first question names it
    roles = [(m["role"], m.get("status")) for m in got["messages"]]
    assert roles == [("user", None), ("assistant", "ok"), ("user", None), ("assistant", "ok")]
    answer = got["messages"][1]
    assert answer["content"] == first.json()["answer"] and answer["request_id"] == first.json()["request_id"]
    assert answer["citations"][0]["chunk_id"] == "leave:0" and answer["rating"] is None
    assert "6pm" in got["messages"][3]["content"]
    # The second question was answered with the first turn as context, and the list shows the conversation.
    listed = call(qs, "GET", "/v1/conversations").json()
    assert conv["id"] in [c["id"] for c in listed["conversations"]]
    assert call(qs, "PATCH", path, json={"title": "Leave and hours"}).json()["title"] == "Leave and hours"
    # Another owner sees nothing of it, and can neither ask in it, rename it nor delete it.
    assert conv["id"] not in [
        c["id"] for c in call(qs, "GET", "/v1/conversations", BOB).json()["conversations"]
    ]
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"title": "x"}), ("DELETE", "", None)]:
        assert call(qs, method, path + suffix, BOB, json=body).status_code == 404
    assert call(qs, "POST", f"{path}/messages", BOB, json={"content": "hi"}).status_code == 404
    assert call(qs, "DELETE", path).json() == {"id": conv["id"], "deleted": True}
    assert call(qs, "GET", path).status_code == 404


def test_regenerate_replaces_the_last_answer_with_a_fresh_one(qs: ServerProcess) -> None:
    conv = call(qs, "POST", "/v1/conversations", json={"title": "VPN"}).json()
    path = f"/v1/conversations/{conv['id']}/messages"
    first = call(qs, "POST", path, json={"content": "How do I connect to the VPN?"})
    again = call(qs, "POST", path, json={"regenerate": True})
    assert again.status_code == 200 and again.headers["x-cache"] == "miss"  # never the cached answer
    assert again.json()["request_id"] != first.json()["request_id"]
    messages = call(qs, "GET", f"/v1/conversations/{conv['id']}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["request_id"] == again.json()["request_id"]
    bad = call(qs, "POST", path, json={"content": "x", "regenerate": True})
    assert bad.status_code == 400 and bad.json()["reason_code"] == "BAD_REQUEST"


def test_a_regeneration_stopped_mid_stream_keeps_the_previous_answer(tmp_path: Path) -> None:
    # Toy tokens 100 ms apart: the regenerated answer is still streaming when the client leaves.
    gateway = start_gateway(LLM_TOY_DELAY_MS="100")
    qs = start_qs(gateway.url, tmp_path / "qs.sqlite3")
    try:
        for doc in DOCS:
            assert httpx.post(f"{qs.url}/v1/documents", json=doc, timeout=20).status_code == 201
        conv = call(qs, "POST", "/v1/conversations", json={}).json()
        path = f"/v1/conversations/{conv['id']}"
        first = call(qs, "POST", f"{path}/messages", json={"content": "When does the office open?"}).json()
        assert first["status"] == "ok"
        body = {"regenerate": True, "stream": True}
        with httpx.stream("POST", f"{qs.url}{path}/messages", json=body, headers=ALICE, timeout=30) as resp:
            for line in resp.iter_lines():
                if line == "event: delta":
                    break  # Stop, mid-answer
        time.sleep(1.0)  # past the moment the stopped answer would have been stored, had it been
        messages = call(qs, "GET", path).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["request_id"] == first["request_id"]
        assert messages[1]["content"] == first["answer"]
    finally:
        qs.stop()
        gateway.stop()


def test_a_rating_is_kept_with_the_answer_and_on_the_audit_chain(qs: ServerProcess) -> None:
    conv = call(qs, "POST", "/v1/conversations", json={}).json()
    answer = call(
        qs, "POST", f"/v1/conversations/{conv['id']}/messages", json={"content": "When does the office open?"}
    ).json()
    rid = answer["request_id"]
    assert call(qs, "POST", "/v1/feedback", json={"request_id": rid, "rating": "up"}).status_code == 200
    rated = call(
        qs, "POST", "/v1/feedback", json={"request_id": rid, "rating": "down", "comment": "too short"}
    )
    assert rated.json()["rating"] == "down"  # the second rating replaces the first
    message = call(qs, "GET", f"/v1/conversations/{conv['id']}").json()["messages"][1]
    assert (message["rating"], message["comment"]) == ("down", "too short")
    listed = httpx.get(f"{qs.url}/admin/feedback", headers=ADMIN, timeout=10).json()
    row = next(r for r in listed["feedback"] if r["request_id"] == rid)
    assert row["question"] == "When does the office open?" and row["key_id"] == "key:alice"
    assert listed["counts"]["down"] >= 1
    record = httpx.get(f"{qs.url}/admin/audit", params={"request_id": rid}, headers=ADMIN).json()["records"][
        0
    ]
    assert record["feedback"]["rating"] == "down"
    assert httpx.get(f"{qs.url}/admin/audit/verify", headers=ADMIN).json()["ok"] is True
    missing = call(qs, "POST", "/v1/feedback", json={"request_id": "no-such-answer", "rating": "up"})
    assert missing.status_code == 404 and missing.json()["reason_code"] == "NOT_FOUND"
    assert 'cairn_qs_feedback_total{rating="down"} 1.0' in httpx.get(f"{qs.url}/metrics").text


def test_only_the_owner_of_an_answer_may_rate_it(qs: ServerProcess) -> None:
    conv = call(qs, "POST", "/v1/conversations", json={}).json()
    path = f"/v1/conversations/{conv['id']}"
    kept = call(qs, "POST", f"{path}/messages", json={"content": "When does the office close?"}).json()
    alone = call(qs, "POST", "/v1/chat", json={"query": "When does the office open?"}).json()
    for rid in (kept["request_id"], alone["request_id"]):
        mine = {"request_id": rid, "rating": "up", "comment": "mine"}
        assert call(qs, "POST", "/v1/feedback", json=mine).status_code == 200
        theirs = call(qs, "POST", "/v1/feedback", BOB, json={**mine, "rating": "down", "comment": "theirs"})
        # The same answer as for an id that does not exist: another owner learns nothing of the answer.
        assert theirs.status_code == 404 and theirs.json()["reason_code"] == "NOT_FOUND"
        assert theirs.json()["message"] == f"No answer with request id {rid!r}."
    message = call(qs, "GET", path).json()["messages"][1]
    assert (message["rating"], message["comment"]) == ("up", "mine")
    listed = httpx.get(f"{qs.url}/admin/feedback", headers=ADMIN, timeout=10).json()["feedback"]
    assert "theirs" not in [r["comment"] for r in listed]


def test_without_the_audit_log_the_conversation_names_who_may_rate(
    toy_gateway: ServerProcess, tmp_path: Path
) -> None:
    srv = start_qs(toy_gateway.url, tmp_path / "qs.sqlite3", QS_AUDIT_ENABLED="false")
    try:
        assert call(srv, "POST", "/v1/documents", json=DOCS[1]).status_code == 201
        conv = call(srv, "POST", "/v1/conversations", json={}).json()
        rid = call(
            srv, "POST", f"/v1/conversations/{conv['id']}/messages", json={"content": "When does it open?"}
        ).json()["request_id"]
        assert (
            call(srv, "POST", "/v1/feedback", BOB, json={"request_id": rid, "rating": "down"}).status_code
            == 404
        )
        assert call(srv, "POST", "/v1/feedback", json={"request_id": rid, "rating": "up"}).status_code == 200
    finally:
        srv.stop()

"""The whole query service on PostgreSQL: a real QS process with QS_STORE_URL pointing at a pgserver database,
running the same ingestion, search, chat and reembed tests that test_documents.py and test_chat.py run on
SQLite (imported here, so they run with this module's `qs`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cairn_testing import PostgresServer, ServerProcess

from . import test_chat, test_documents
from .conftest import ADMIN, DOCS, start_qs


@pytest.fixture(scope="module")
def qs(
    toy_gateway: ServerProcess, pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # QS_DB_PATH names a file that must never appear: the URL wins.
    unused = tmp_path_factory.mktemp("qs-pg") / "unused.sqlite3"
    srv = start_qs(toy_gateway.url, unused, QS_STORE_URL=pg_server.url("qs_integration"))
    with httpx.Client(base_url=srv.url, timeout=20) as client:
        for doc in DOCS:
            assert client.post("/v1/documents", json=doc).status_code in (200, 201)
    yield srv
    srv.stop()
    assert not unused.exists()


@pytest.fixture()
def client(qs: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=qs.url, timeout=20) as client:
        yield client


def test_restart_on_postgres_keeps_documents(toy_gateway: ServerProcess, pg_server: PostgresServer) -> None:
    url = pg_server.url("qs_restart")
    srv = start_qs(toy_gateway.url, Path("/nonexistent/unused.sqlite3"), QS_STORE_URL=url)
    try:
        assert httpx.post(f"{srv.url}/v1/documents", json=DOCS[0]).status_code == 201
    finally:
        srv.stop()
    srv = start_qs(toy_gateway.url, Path("/nonexistent/unused.sqlite3"), QS_STORE_URL=url)
    try:
        ready = httpx.get(f"{srv.url}/readyz").json()
        assert ready["documents"] == 1 and ready["chunks"] >= 1
    finally:
        srv.stop()


test_ingest_then_search_finds_the_chunk_with_title_url_and_scores = (
    test_documents.test_ingest_then_search_finds_the_chunk_with_title_url_and_scores
)
test_collection_and_metadata_filters = test_documents.test_collection_and_metadata_filters
test_reingest_is_idempotent_and_a_change_replaces_chunks = (
    test_documents.test_reingest_is_idempotent_and_a_change_replaces_chunks
)
test_delete_removes_the_document_from_every_index = (
    test_documents.test_delete_removes_the_document_from_every_index
)
test_get_and_list_documents = test_documents.test_get_and_list_documents
test_chat_answers_with_valid_citations_and_sources = (
    test_chat.test_chat_answers_with_valid_citations_and_sources
)
test_stream_sources_first_then_relayed_events_then_done = (
    test_chat.test_stream_sources_first_then_relayed_events_then_done
)
test_cache_hit_then_invalidated_by_new_documents = test_chat.test_cache_hit_then_invalidated_by_new_documents
test_no_context_does_not_call_the_model = test_chat.test_no_context_does_not_call_the_model
test_hybrid_query_scores_a_grounded_answer = test_chat.test_hybrid_query_scores_a_grounded_answer
test_reembed_rewrites_every_vector = test_chat.test_reembed_rewrites_every_vector


def test_nul_in_any_text_field_is_stored_as_a_replacement_character_on_both_backends(
    toy_gateway: ServerProcess, target: str
) -> None:
    """PostgreSQL text cannot hold NUL: each of these was a 500 (psycopg DataError) there. Both backends now
    store U+FFFD in its place, and a filter or search with NUL finds what was stored with it."""
    srv = start_qs(toy_gateway.url, Path("/nonexistent/unused.sqlite3"), QS_STORE_URL=target)
    owner = {"X-Cairn-Owner": "key:alice"}
    try:
        with httpx.Client(base_url=srv.url, timeout=30, headers=owner) as client:
            doc = {
                "id": "nul",
                "title": "Trail\x00 marks",
                "text": "Cairns are piles of stones\x00 that mark trails.",
                "metadata": {"team": "hi\x00ke", "k\x00": "v"},
            }
            assert client.post("/v1/documents", json=doc).status_code == 201
            got = client.get("/v1/documents/nul").json()
            assert got["title"] == "Trail\ufffd marks" and "stones\ufffd that" in got["text"]
            assert got["metadata"] == {"team": "hi\ufffdke", "k\ufffd": "v"}
            listed = client.get("/v1/documents", params={"q": "Trail\x00"})
            assert listed.status_code == 200 and [d["id"] for d in listed.json()["documents"]] == ["nul"]
            found = client.post(
                "/v1/search", json={"query": "What marks trails?", "filters": {"team": "hi\x00ke"}}
            )
            assert found.status_code == 200 and found.json()["results"][0]["document_id"] == "nul"
            conv = client.post("/v1/conversations", json={"title": "New\x00"})
            assert conv.status_code == 201 and conv.json()["title"] == "New\ufffd"
            path = f"/v1/conversations/{conv.json()['id']}"
            assert client.patch(path, json={"title": "Re\x00named"}).json()["title"] == "Re\ufffdnamed"
            answer = client.post(f"{path}/messages", json={"content": "What marks\x00 trails?"})
            assert answer.status_code == 200, answer.text
            rated = client.post(
                "/v1/feedback",
                json={"request_id": answer.json()["request_id"], "rating": "up", "comment": "go\x00od"},
            )
            assert rated.status_code == 200 and rated.json()["comment"] == "go\ufffdod", rated.text
            messages = client.get(path).json()["messages"]
            assert (
                messages[0]["content"] == "What marks\ufffd trails?"
                and messages[1]["comment"] == "go\ufffdod"
            )
            audit = client.get("/admin/audit", params={"q": "marks\x00"}, headers=ADMIN)
            assert audit.status_code == 200, audit.text
    finally:
        srv.stop()

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
from .conftest import DOCS, start_qs


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

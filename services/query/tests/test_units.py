"""Unit tests of single modules: chunking, extraction, the store, the cache key, and the gateway client."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx
import pytest
import respx
import structlog
from cairn_core import BadRequest, GenerateRequest, ReasonCode, UpstreamError, split_sentences
from cairn_query.chat.cache import AnswerCache, cache_key
from cairn_query.clients.gateway import GatewayClient
from cairn_query.corpus.chunking import chunk_text
from cairn_query.corpus.extract import ExtractError, extract_file, html_to_text
from cairn_query.corpus.parsing import kind_of
from cairn_query.settings import QuerySettings
from cairn_query.store import NewDocument, SQLiteStore, fts_query
from opentelemetry.trace import NoOpTracer

# --- chunking ---------------------------------------------------------------------------------------------


def test_chunks_break_on_sentences_overlap_and_are_deterministic() -> None:
    text = " ".join(f"Sentence number {i} says something useful." for i in range(60))
    chunks = chunk_text(text, size=300, overlap=80)
    assert len(chunks) > 5 and all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # whole sentences only
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.split(". ")[0] in prev  # the next chunk starts with the tail of the previous one
    assert chunk_text(text, size=300, overlap=80) == chunks


def test_paragraph_breaks_end_sentences_and_long_sentences_are_cut() -> None:
    chunks = chunk_text("Title without a period\n\nBody text here.", size=100, overlap=0)
    # The paragraph break stays in the chunk, so the line without a period is not glued to the next sentence.
    assert chunks == ["Title without a period\n\nBody text here."]
    assert split_sentences(chunks[0]) == ["Title without a period", "Body text here."]
    long = "word " * 500
    assert all(len(c) <= 200 for c in chunk_text(long, size=200, overlap=0))
    assert chunk_text("   \n\n ") == []


# --- extraction -------------------------------------------------------------------------------------------


def test_html_text_drops_scripts_and_keeps_the_title() -> None:
    text, title = html_to_text(
        "<html><head><title>T &amp; C</title><script>var x</script></head><body><h1>Head</h1><p>A&nbsp;b</p></body>"
    )
    assert title == "T & C" and "var x" not in text and "Head" in text and "A\xa0b" in text


def test_unsupported_and_broken_files_are_refused_with_reason_codes() -> None:
    with pytest.raises(BadRequest) as exc:
        kind_of("x.exe", None)
    assert exc.value.reason_code is ReasonCode.UNSUPPORTED_MEDIA_TYPE
    with pytest.raises(ExtractError, match="PDF could not be read"):
        extract_file("pdf", b"not a pdf")
    with pytest.raises(ExtractError, match="not UTF-8"):
        extract_file("text", b"\xff\xfe\x00bad")


def test_a_broken_marked_section_is_dropped_and_the_rest_kept() -> None:
    assert html_to_text("<p>hi</p><![ x") == ("hi", "")
    assert html_to_text("<p>hi</p><![ x <p>more</p>") == ("hi\n\nmore", "")


# --- store ------------------------------------------------------------------------------------------------


def _doc(doc_id: str, chunks: list[str], vectors: list[list[float]] | None, model: str = "m1") -> NewDocument:
    """One vector per chunk (the chunk's own; sentence vectors have their own test)."""
    per_chunk = [[v] for v in vectors] if vectors is not None else None
    return NewDocument(doc_id, "default", None, None, {}, " ".join(chunks), doc_id, chunks, per_chunk, model)


def test_store_is_atomic_and_vectors_of_another_model_are_not_mixed(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    store.upsert(_doc("a", ["red apples", "green pears"], [[1, 0, 0], [0, 1, 0]]))
    assert store.embed_model() == ("m1", 3)
    hits = store.vector_search([1, 0.1, 0], "m1", 5, None, {})
    assert hits is not None and next(r for r, _ in hits) == store.get_chunk("a:0").rowid  # type: ignore[union-attr]
    # Another embedding model: the query is refused (None) and new vectors are not stored beside the old ones.
    assert store.vector_search([1, 0, 0, 0], "m2", 5, None, {}) is None
    store.upsert(_doc("b", ["blue plums"], [[0, 0, 1, 0]], model="m2"))
    assert store.vectors_of(["b:0"]) == {}
    # A failure inside the transaction leaves nothing behind (two chunks, one vector).
    version = store.version()
    with pytest.raises(ValueError):
        store.upsert(_doc("c", ["one", "two"], [[1, 0, 0]]))
    assert store.get_document("c") is None and store.get_chunk("c:0") is None and store.version() == version
    # Re-embedding with the new model replaces every vector and the recorded model.
    store.set_vectors(
        "m2", {store.get_chunk(c).rowid: [[1, 0, 0, 0]] for c in ("a:0", "a:1", "b:0")}, reset=True
    )  # type: ignore[union-attr]
    assert store.embed_model() == ("m2", 4)
    assert len(store.vector_search([1, 0, 0, 0], "m2", 5, None, {}) or []) == 3
    store.close()


def test_a_chunk_scores_its_best_sentence_vector(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"))
    # Chunk a: its own vector points one way, its second sentence's another; chunk b sits in between.
    doc_a = NewDocument("a", "default", None, None, {}, "x", "a", ["x"], [[[1, 0, 0], [0, 0, 1]]], "m")
    doc_b = NewDocument("b", "default", None, None, {}, "y", "b", ["y"], [[[0, 0.6, 0.8]]], "m")
    store.upsert(doc_a)
    store.upsert(doc_b)
    hits = store.vector_search([0, 0, 1], "m", 5, None, {})
    assert hits is not None
    rowid_a = store.get_chunk("a:0").rowid  # type: ignore[union-attr]
    # a's sentence vector matches exactly, so a ranks first with similarity 1, and appears once.
    assert hits[0] == (rowid_a, pytest.approx(1.0)) and len(hits) == 2
    assert store.vectors_of(["a:0"])["a:0"].shape == (2, 3)
    store.close()


def test_fts_query_drops_stopwords_and_quotes_terms() -> None:
    assert fts_query("What is the VPN's setup?") == '"vpn" OR "setup"'
    assert fts_query("what is the") is None


async def test_cache_key_normalises_and_changes_with_the_corpus() -> None:
    k1 = cache_key([("user", "Hello  World")], None, {}, 5, None, 1, "*")
    assert k1 == cache_key([("user", " hello world ")], None, {}, 5, None, 1, "*")
    assert k1 != cache_key([("user", "hello world")], None, {}, 5, None, 2, "*")
    assert k1 != cache_key([("user", "hello world")], "hr", {}, 5, None, 1, "*")
    # Another permission set never shares an answer (governance/access.py, Access.scope_key).
    assert k1 != cache_key([("user", "hello world")], None, {}, 5, None, 1, "hr")
    cache = AnswerCache(size=1, ttl_s=60)
    await cache.put("a", {"x": 1})
    await cache.put("b", {"x": 2})
    assert await cache.get("a") is None and await cache.get("b") == {"x": 2}


# --- gateway client (respx) -------------------------------------------------------------------------------


def _client(**overrides: object) -> GatewayClient:
    settings = QuerySettings(gateway_url="http://gw.test", retry_wait_ms=0, **overrides)  # type: ignore[arg-type]
    return GatewayClient(settings, httpx.AsyncClient(), NoOpTracer())


_REQ = GenerateRequest(prompt="hi")
_OK = {"status": "ok", "text": "hello", "answer": "hello"}


@respx.mock
async def test_retries_503_before_the_first_byte_then_succeeds() -> None:
    route = respx.post("http://gw.test/v1/generate").mock(
        side_effect=[
            httpx.Response(503, json={"reason_code": "PROVIDER_UNAVAILABLE", "message": "x"}),
            httpx.Response(200, json=_OK),
        ]
    )
    structlog.contextvars.bind_contextvars(request_id="rid-123")
    try:
        resp = await _client().generate(_REQ)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    assert resp.answer == "hello" and route.call_count == 2
    assert [c.request.headers["x-request-id"] for c in route.calls] == ["rid-123", "rid-123"]


@respx.mock
async def test_queue_full_is_not_retried_and_keeps_its_reason_code() -> None:
    route = respx.post("http://gw.test/v1/generate").mock(
        return_value=httpx.Response(429, json={"reason_code": "QUEUE_FULL", "message": "full"})
    )
    with pytest.raises(UpstreamError) as exc:
        await _client().generate(_REQ)
    assert exc.value.reason_code is ReasonCode.QUEUE_FULL and route.call_count == 1


@respx.mock
async def test_circuit_opens_after_consecutive_failures() -> None:
    route = respx.post("http://gw.test/v1/generate").mock(side_effect=httpx.ConnectError("refused"))
    client = _client(retries=0, circuit_failures=2)
    for _ in range(2):
        with pytest.raises(UpstreamError) as exc:
            await client.generate(_REQ)
        assert exc.value.reason_code is ReasonCode.PROVIDER_UNAVAILABLE
    with pytest.raises(UpstreamError) as exc:
        await client.generate(_REQ)
    assert exc.value.reason_code is ReasonCode.CIRCUIT_OPEN and route.call_count == 2


@respx.mock
async def test_two_gateway_replicas_take_turns_and_a_retry_goes_to_the_other() -> None:
    down = respx.post("http://gw-a.test/v1/generate").mock(side_effect=httpx.ConnectError("refused"))
    up = respx.post("http://gw-b.test/v1/generate").mock(return_value=httpx.Response(200, json=_OK))
    client = _client(gateway_urls="http://gw-a.test, http://gw-b.test/", retries=1)
    for _ in range(4):
        assert (await client.generate(_REQ)).answer == "hello"
    # The refused replica was tried once, then kept at the back of the order while it cools down.
    assert down.call_count == 1 and up.call_count == 4
    assert not client.circuit_open


@respx.mock
async def test_each_gateway_replica_has_its_own_circuit() -> None:
    respx.post("http://gw-a.test/v1/generate").mock(
        return_value=httpx.Response(503, json={"reason_code": "PROVIDER_UNAVAILABLE", "message": "x"})
    )
    up = respx.post("http://gw-b.test/v1/generate").mock(return_value=httpx.Response(200, json=_OK))
    client = _client(gateway_urls="http://gw-a.test,http://gw-b.test", retries=1, circuit_failures=2)
    for _ in range(6):
        assert (await client.generate(_REQ)).answer == "hello"
    a, b = client.replicas.items
    assert a.circuit.is_open and not b.circuit.is_open and up.call_count == 6
    assert not client.circuit_open


@respx.mock
@pytest.mark.parametrize(("batch_inputs", "calls"), [(256, 2), (64, 5), (1, 300)])
async def test_embed_sends_as_few_calls_as_the_cap_allows_and_keeps_each_texts_vector_in_place(
    batch_inputs: int, calls: int
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        texts = httpx.Response(200, content=request.content).json()["input"]
        assert len(texts) <= batch_inputs
        # A vector that is a function of its text alone, as a real embedder's is.
        vectors = [[float(len(t)), float(t.count("x"))] for t in texts]
        return httpx.Response(200, json={"embeddings": vectors, "model": "toy", "dims": 2})

    route = respx.post("http://gw.test/v1/embed").mock(side_effect=answer)
    texts = [f"t{i}" + "x" * ((i * 37) % 101) for i in range(300)]  # lengths out of order
    vectors, model = await _client(embed_batch_inputs=batch_inputs).embed(texts)
    assert vectors == [[float(len(t)), float(t.count("x"))] for t in texts] and model == "toy"
    assert route.call_count == calls
    if batch_inputs > 1:  # shortest first: each call holds texts of about one length
        sent = [httpx.Response(200, content=c.request.content).json()["input"] for c in route.calls]
        assert max(map(len, sent[0])) <= min(map(len, sent[1]))


class _GatedBytes(httpx.AsyncByteStream):
    """A gateway body whose next chunk arrives only when the test says so."""

    def __init__(self) -> None:
        self.next: asyncio.Future[bytes] | None = None

    async def __aiter__(self):
        while True:
            self.next = asyncio.get_running_loop().create_future()
            yield await self.next


@pytest.mark.parametrize("turns_before_cancel", [0, 1, 2, 3])
async def test_relay_keeps_a_disconnect_that_arrives_with_a_chunk(turns_before_cancel: int) -> None:
    # The client leaves in the same instant a gateway chunk arrives. The relay must stop (and so close the
    # gateway's stream); asyncio.wait_for on Python 3.11 lost exactly this cancel, in some of these timings.
    from cairn_query.chat.relay import relay

    body = _GatedBytes()
    resp = httpx.Response(200, stream=body)
    frames: list[object] = []

    async def consume() -> None:
        async for event in relay(resp, time.perf_counter() + 10):
            frames.append(event)

    task = asyncio.ensure_future(consume())
    for _ in range(5):
        await asyncio.sleep(0)
    assert body.next is not None
    body.next.set_result(b'event: delta\ndata: {"text": "a"}\n\n')
    for _ in range(turns_before_cancel):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), 2)
    assert task.cancelled()


class _Bytes(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


async def test_the_relay_reads_a_gateway_stream_whose_lines_end_in_crlf() -> None:
    # The SSE standard lets a server end lines in CRLF; the relay used to wait for a "\n\n" that never came.
    from cairn_query.chat.events import Delta, Generated, Meta
    from cairn_query.chat.relay import relay

    raw = (
        b'event: meta\r\ndata: {"model": "m", "provider": "p"}\r\n\r\n'
        b'event: delta\r\ndata: {"text": "an answer"}\r\n\r\n'
        b'event: done\r\ndata: {"status": "ok", "answered_by": "model"}\r\n\r\n'
    )
    # Split inside every CRLF, as a network may deliver it.
    resp = httpx.Response(200, stream=_Bytes(*raw.replace(b"\r\n", b"\r|\n").split(b"|")))
    events = [e async for e in relay(resp, time.perf_counter() + 10)]
    assert [type(e) for e in events] == [Meta, Delta, Generated], events
    assert events[1].text == "an answer" and events[2].answered_by == "model"
    # Each event keeps its frame's bytes for the relay; the `done` is held for the policy check.
    assert [e.raw.split(b"\n", 1)[0] for e in events] == [b"event: meta", b"event: delta", b"event: done"]


# --- settings -----------------------------------------------------------------------------------------------


def test_llm_url_and_llm_model_are_accepted_for_gateway_url_and_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("QS_GATEWAY_URL", "QS_MODEL", "QS_LLM_URL", "QS_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert QuerySettings().gateway_url == "http://127.0.0.1:8082" and QuerySettings().model is None
    monkeypatch.setenv("QS_LLM_URL", "http://llm.test:9000")
    monkeypatch.setenv("QS_LLM_MODEL", "gemma")
    settings = QuerySettings()
    assert settings.gateway_url == "http://llm.test:9000" and settings.model == "gemma"
    # The canonical names win when both are set, and the field names still work in code.
    monkeypatch.setenv("QS_GATEWAY_URL", "http://gateway.test:8082")
    monkeypatch.setenv("QS_MODEL", "toy")
    settings = QuerySettings()
    assert settings.gateway_url == "http://gateway.test:8082" and settings.model == "toy"
    assert (
        QuerySettings(gateway_url="http://kw.test", model="m").model_dump()["gateway_url"] == "http://kw.test"
    )

"""Grounded answers: constrained schema sent upstream, valid citations pass, invalid ones never leak."""

from __future__ import annotations

import httpx
from cairn_testing import ServerProcess

from .conftest import sse, stats

CHUNKS = [
    {
        "chunk_id": "handbook:0",
        "title": "Handbook",
        "url": "https://example.test/h",
        "text": "Cairns mark trails.",
    },
    {"chunk_id": "handbook:1", "title": "Handbook", "text": "Stack stones carefully."},
]


def ask(gw: ServerProcess, prompt: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/generate",
        timeout=10,
        json={"prompt": prompt, "citations_required": True, "context_chunks": CHUNKS, "stream": stream},
    )


def test_schema_restricts_chunk_ids_and_valid_citations_are_enriched(
    gateway: ServerProcess, fake: ServerProcess
) -> None:
    body = ask(gateway, "What marks trails?").json()
    assert body["status"] == "ok"
    assert body["citations"] == [
        {"chunk_id": "handbook:0", "title": "Handbook", "url": "https://example.test/h", "page": None}
    ]
    assert body["answer"] == "Cairns mark trails."  # the fake quotes its first source
    sent = stats(fake)["last_body"]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["citations"]["items"]["properties"]["chunk_id"]["enum"] == [
        "handbook:0",
        "handbook:1",
    ]
    system = sent["messages"][0]
    assert system["role"] == "system" and "[handbook:1]" in system["content"]


def test_invalid_citation_never_reaches_the_client(gateway: ServerProcess) -> None:
    resp = ask(gateway, "[[bad_citation]]")
    body = resp.json()
    assert resp.status_code == 200 and body["status"] == "fallback"
    assert body["reason_code"] == "INVALID_CITATION" and body["citations"] == []
    assert "not-a-real-chunk" not in {c["chunk_id"] for c in body["citations"]}
    assert body["answer"] is None


def test_stream_sends_answer_text_then_validated_citations(gateway: ServerProcess) -> None:
    events = sse(ask(gateway, "What marks trails?", stream=True).text)
    names = [e for e, _ in events]
    assert names[0] == "meta" and names[-2:] == ["citations", "done"]
    assert "".join(d["text"] for e, d in events if e == "delta") == "Cairns mark trails."
    assert events[-2][1]["citations"][0]["chunk_id"] == "handbook:0"


def test_stream_with_invalid_citation_ends_in_fallback_without_citations(gateway: ServerProcess) -> None:
    resp = ask(gateway, "[[bad_citation]]", stream=True)
    events = sse(resp.text)
    names = [e for e, _ in events]
    assert "citations" not in names and names[-2:] == ["error", "done"]
    assert events[-1][1] == {**events[-1][1], "status": "fallback", "reason_code": "INVALID_CITATION"}
    assert "not-a-real-chunk" not in "".join(str(d) for e, d in events if e in ("delta", "citations", "done"))


def test_an_escaped_surrogate_pair_from_the_model_arrives_as_one_character(gateway: ServerProcess) -> None:
    # The emoji comes as `\ud83d\ude00`, split across stream pieces; decoded half by half it became two lone
    # surrogates, which no encoder writes, and the stream died without its terminal event.
    body = ask(gateway, "[[surrogate_pair]]").json()
    assert body["status"] == "ok" and body["answer"].endswith("\U0001f600")
    events = sse(ask(gateway, "[[surrogate_pair]]", stream=True).text)
    assert [e for e, _ in events][-2:] == ["citations", "done"]
    assert "".join(d["text"] for e, d in events if e == "delta").endswith("\U0001f600")


def test_json_nested_deeper_than_the_stack_is_malformed_output_not_a_500(gateway: ServerProcess) -> None:
    resp = ask(gateway, "[[deep_json]]")
    assert resp.status_code == 200, resp.text
    assert resp.json()["reason_code"] == "MALFORMED_OUTPUT"
    events = sse(ask(gateway, "[[deep_json]]", stream=True).text)
    assert events[-1][0] == "done" and events[-1][1]["reason_code"] == "MALFORMED_OUTPUT"

from __future__ import annotations

import cairn_core
import httpx
from cairn_core import DeltaEvent, ReasonCode, encode_event
from cairn_core.contract.errors import error_body
from cairn_core.web.sse import aiter_sse, aiter_sse_chunks


async def test_encode_decode_round_trip_including_newlines() -> None:
    body = encode_event("delta", DeltaEvent(text="line one\nline two")) + encode_event(
        "done", {"status": "ok"}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        client.stream("GET", "http://x/") as resp,
    ):
        msgs = [m async for m in aiter_sse(resp)]
    assert [m.event for m in msgs] == ["delta", "done"]
    assert msgs[0].json() == {"text": "line one\nline two"}


def test_error_body_shape() -> None:
    assert error_body(ReasonCode.QUEUE_FULL, "busy", "r1") == {
        "reason_code": "QUEUE_FULL",
        "message": "busy",
        "request_id": "r1",
    }


def test_exported_members_exist() -> None:
    for name in cairn_core.__all__:
        assert hasattr(cairn_core, name), name
    assert sorted(cairn_core.__all__) == sorted(set(cairn_core.__all__))


async def test_sse_from_raw_chunks_split_anywhere() -> None:
    raw = 'event: delta\r\ndata: {"text":"café"}\r\n\r\n: keep-alive\rdata: a\rdata: b\r\rdata: never ended'.encode()

    async def chunks():
        for i in range(len(raw)):  # one byte at a time: splits "é" and every line end
            yield raw[i : i + 1]

    got = [(m.event, m.data) async for m in aiter_sse_chunks(chunks())]
    # CRLF and bare CR both end lines, comments are skipped, data lines join with "\n", and the last event,
    # never closed by a blank line, is dropped as the SSE spec says.
    assert got == [("delta", '{"text":"café"}'), ("message", "a\nb")]


def test_the_decoder_follows_the_standard_on_the_edges() -> None:
    body = "\ufeffdata:  two spaces, one kept\n\nevent: empty\n\ndata\n\nevent: x\ndata: 1\nid: 7\nretry: 5\nbogus\n\n"
    got = [(m.event, m.data) for m in cairn_core.decode_sse(body)]
    # The byte-order mark goes; one space after the colon goes, not two; a block without data is no event; a
    # field name alone is a field with an empty value; id, retry and unknown fields change nothing here.
    assert got == [("message", " two spaces, one kept"), ("message", ""), ("x", "1")]


def test_the_decoder_keeps_each_frame_for_a_relay() -> None:
    frames = encode_event("meta", {"model": "m"}) + b": ping\n\n" + encode_event("delta", {"text": "a\nb"})
    decoder = cairn_core.SSEDecoder(keep_raw=True)
    got = [m for i in range(0, len(frames), 5) for m in decoder.feed(frames[i : i + 5])]
    # LF-ended frames come back byte for byte (the comment-only block is no event, so nothing to relay).
    assert b"".join(m.raw for m in got) == encode_event("meta", {"model": "m"}) + encode_event(
        "delta", {"text": "a\nb"}
    )


def test_iter_sse_reads_a_blocking_stream_chunk_by_chunk() -> None:
    raw = encode_event("delta", {"text": "é"}) + b"event: done\r\ndata: {}\r\n\r\n"
    got = [(m.event, m.json()) for m in cairn_core.iter_sse(raw[i : i + 3] for i in range(0, len(raw), 3))]
    assert got == [("delta", {"text": "é"}), ("done", {})]

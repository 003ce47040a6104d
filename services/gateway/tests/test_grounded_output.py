from __future__ import annotations

import json

import pytest
from cairn_core import ContextChunk, ReasonCode
from cairn_gateway.citations import (
    AnswerExtractor,
    CitationError,
    check_grounded,
    json_schema,
    parse_grounded,
)

CHUNKS = [ContextChunk(chunk_id="a:0", title="A", url="u", text="x"), ContextChunk(chunk_id="b:1", text="y")]


@pytest.mark.parametrize(
    "text",
    [
        '{"answer": "yes", "citations": [{"chunk_id": "a:0"}]}',
        'Sure! Here it is:\n```json\n{"answer": "yes", "citations": [{"chunk_id": "a:0"}]}\n```\nDone.',
        'prefix {"answer": "yes", "citations": [{"chunk_id": "a:0"},],} suffix',
        '{"answer": "yes", "citations": ["a:0"]}',
    ],
)
def test_tolerant_parser_accepts_common_model_quirks(text: str) -> None:
    grounded = check_grounded(text, CHUNKS)
    assert grounded.answer == "yes"
    assert [c.model_dump() for c in grounded.citations] == [{"chunk_id": "a:0", "title": "A", "url": "u"}]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("no json here", ReasonCode.MALFORMED_OUTPUT),
        ('{"answer": "", "citations": [{"chunk_id": "a:0"}]}', ReasonCode.MALFORMED_OUTPUT),
        ('{"answer": "yes", "citations": []}', ReasonCode.MISSING_CITATIONS),
        ('{"answer": "yes"}', ReasonCode.MISSING_CITATIONS),
        ('{"answer": "yes", "citations": [{"chunk_id": "zzz"}]}', ReasonCode.INVALID_CITATION),
        ('{"answer": "yes", "citations": [{"id": "a:0"}]}', ReasonCode.MALFORMED_OUTPUT),
    ],
)
def test_invalid_outputs_get_their_reason_code(text: str, code: ReasonCode) -> None:
    with pytest.raises(CitationError) as err:
        check_grounded(text, CHUNKS)
    assert err.value.reason_code is code


def test_a_raw_line_break_inside_the_answer_is_kept_not_refused() -> None:
    # What Gemma 3 270M wrote under llama-cpp-python's json_object grammar, which lets control characters through.
    text = '{"answer":"Cairns mark trails.\nThey are stones.\t" ,"citations":[{"chunk_id": "a:0"}]}'
    assert check_grounded(text, CHUNKS).answer == "Cairns mark trails.\nThey are stones."


def test_duplicate_citations_collapse() -> None:
    text = '{"answer": "y", "citations": [{"chunk_id": "b:1"}, {"chunk_id": "b:1"}, {"chunk_id": "a:0"}]}'
    assert [c.chunk_id for c in check_grounded(text, CHUNKS).citations] == ["b:1", "a:0"]


def test_schema_enumerates_ids() -> None:
    schema = json_schema(["a:0", "b:1"])
    assert schema["properties"]["citations"]["items"]["properties"]["chunk_id"]["enum"] == ["a:0", "b:1"]
    assert parse_grounded(json.dumps({"answer": "x", "citations": []})) == {"answer": "x", "citations": []}


def test_answer_extractor_streams_across_split_escapes() -> None:
    payload = json.dumps(
        {"answer": 'He said "hi"\nthen left \u00e9 \\o/', "citations": [{"chunk_id": "a:0"}]},
        ensure_ascii=True,
    )
    for size in (1, 2, 3, 7):
        ex = AnswerExtractor()
        out = "".join(ex.feed(payload[i : i + size]) for i in range(0, len(payload), size))
        assert out == 'He said "hi"\nthen left \u00e9 \\o/'
        assert ex.done


def test_answer_extractor_waits_for_the_key() -> None:
    ex = AnswerExtractor()
    assert ex.feed('{"citations": [], "ans') == ""
    assert ex.feed('wer": "ok') == "ok"
    assert ex.feed('"}') == ""

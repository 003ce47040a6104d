"""Documents we did not write: the Python Language Reference as Sphinx renders it to text, shipped with every
CPython as `pydoc_data.topics` (PSF licence). Its code, grammar and markup are what real reference
documentation looks like."""

from __future__ import annotations

from pydoc_data.topics import topics

from cairn_query.evidence import about_someone_else
from cairn_query.retrieval import Hit
from cairn_query.store import ChunkRow


def _hit(text: str, title: str) -> Hit:
    chunk = ChunkRow(1, "doc:0", "doc", 0, text, title, None, "default", {})
    return Hit(chunk, 1.0, 1, 1, 0.9, True)


def test_a_one_letter_name_in_the_question_is_found_in_the_chunk() -> None:
    # "C" is a name the chunk holds; lone letters were not looked up, so the chunk passed for another party's.
    hit = _hit(topics["typesseq"], "Sequence Types")
    question = "Does the C implementation of Python make the list appear empty while it sorts?"
    assert not about_someone_else(question, hit)

from __future__ import annotations

import re
from pathlib import Path

from cairn_core import HTTP_STATUS, ReasonCode

DOC = Path(__file__).resolve().parents[3] / "docs" / "reason-codes.md"


def test_every_reason_code_is_documented_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOC.read_text(), flags=re.M))
    assert documented == {c.value for c in ReasonCode}


def test_every_reason_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(ReasonCode)

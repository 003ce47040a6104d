"""One JSON object per line, whatever kind of stdout the process has."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from cairn_core.observability import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    yield
    monkeypatch.undo()
    configure_logging("cairn-tests")  # later tests log to the real stdout again


def _log_to(monkeypatch, out: io.TextIOBase) -> None:
    monkeypatch.setattr("sys.stdout", out)
    configure_logging("svc", "INFO")
    structlog.get_logger("t").info("hello", n=1, by_id={7: "seven"})
    structlog.get_logger("t").debug("not at INFO")


def test_a_binary_stdout_gets_one_json_line(monkeypatch) -> None:
    raw = io.BytesIO()
    _log_to(monkeypatch, io.TextIOWrapper(raw, write_through=True))
    lines = raw.getvalue().decode().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["event"] == "hello" and entry["service"] == "svc" and entry["by_id"] == {"7": "seven"}


def test_a_text_only_stdout_gets_the_same_line(monkeypatch) -> None:
    out = io.StringIO()  # like a notebook's stdout: no `.buffer`
    _log_to(monkeypatch, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["n"] == 1

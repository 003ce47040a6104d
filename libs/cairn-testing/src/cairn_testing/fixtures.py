"""pytest fixtures more than one suite uses, loaded for all of them by the root `conftest.py`
(`pytest_plugins`). Not imported by the package itself, so benchmarks do not need pytest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .processes import ServerProcess
from .stack import start_fake_openai


@pytest.fixture(scope="session")
def fake() -> Iterator[ServerProcess]:
    """The fake OpenAI-compatible server (`cairn_testing.fake_openai`), one for the whole session."""
    srv = start_fake_openai()
    yield srv
    srv.stop()

"""The first run's background build of llama.cpp, as scripts/setup.sh reports it in `.run/llama-build.json`.

llama-cpp-python has no binary wheel for this platform, so the first `make up` on a machine compiles it
(about 9 minutes on 2 cores) in the background while the stack already serves answers quoted from the
sources. The gateway reads the status file to tell users why the model is not there yet and how far the build
is, and its change to notice the end of the build (registry.retry_failed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

# The start of the llamacpp provider's error when the module cannot be imported (providers/llamacpp.py).
LLAMA_MISSING = "llama-cpp-python is not installed"


def build_stamp(path: str) -> tuple[float, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def build_status(path: str) -> dict[str, Any] | None:
    """The status file as written by setup.sh, with `elapsed_s` filled in; None when there is none."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("state") not in ("building", "done", "failed"):
        return None
    started = float(data.get("started_at") or time.time())
    end = float(data.get("finished_at") or time.time())
    data["elapsed_s"] = max(0, round(end - started))
    return data


def build_note(path: str) -> str | None:
    """One sentence for users about a build under way or failed; None when there is nothing to say."""
    status = build_status(path)
    if status is None or status["state"] == "done":
        return None
    minutes, seconds = divmod(int(status["elapsed_s"]), 60)
    if status["state"] == "failed":
        return (
            f"Building llama.cpp failed after {minutes} min {seconds} s; see {status.get('log', 'the log')}."
        )
    expected = int(status.get("expected_s") or 600) // 60
    return (
        f"llama.cpp is being compiled for this machine ({minutes} min {seconds} s so far, usually about "
        f"{expected} min); the model loads by itself when it is done."
    )

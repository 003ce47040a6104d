"""How a child process ended, in words: shared by the gateway's model worker and `make up`'s supervisor."""

from __future__ import annotations

import signal


def describe_exit(returncode: int | None) -> str:
    """'SIGSEGV' for a death by signal (Popen and asyncio report -signum), 'exit status 3' otherwise."""
    if returncode is None:
        return "unknown"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"

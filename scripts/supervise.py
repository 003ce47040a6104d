"""Keep one Cairn service running: restart it with backoff when it exits unexpectedly (scripts/stack.sh).

    python scripts/supervise.py NAME RUN_DIR -- COMMAND...

- The service runs as a child; this process's pid is `RUN_DIR/NAME.pid` (written by stack.sh), the child's is
  in `RUN_DIR/NAME.state.json` with the restart count, the last exit and when it was, for `make status`.
- An exit that was not asked for (a crash, kill -9, an out-of-memory kill, even a clean exit) is logged to
  the service's log and followed by a new start after 1 s, 2 s, 4 s … up to CAIRN_RESTART_MAX_S (30 s).
  A child that ran a minute resets the doubling. After CAIRN_RESTART_LIMIT (10) failures in a row, each
  within a minute of its start, it gives up (a broken setting would otherwise spin for ever) and says so.
- SIGTERM or SIGINT (`make down`) stops the child (SIGTERM, then SIGKILL after 10 s) and this process.

Docker Compose's `restart: unless-stopped` plays this part for containers (compose/docker-compose.yml).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cairn_core import describe_exit

STABLE_S = 60.0
STOP_GRACE_S = 10.0


class Supervisor:
    def __init__(self, name: str, run_dir: Path, command: list[str]) -> None:
        self.name = name
        self.state_path = run_dir / f"{name}.state.json"
        self.command = command
        self.max_wait = float(os.environ.get("CAIRN_RESTART_MAX_S", "30"))
        self.limit = int(os.environ.get("CAIRN_RESTART_LIMIT", "10"))
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.state: dict[str, Any] = {
            "restarts": 0,
            "last_exit": None,
            "last_exit_at": None,
            "gave_up": False,
        }

    def say(self, event: str, **fields: Any) -> None:
        """One JSON line in the service's own log (stdout is that log), like the services' own lines."""
        line = {"event": event, "service": self.name, "logger": "supervisor", **fields}
        line["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps(line), flush=True)

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.state, "child_pid": self.child.pid if self.child else None}))
        tmp.replace(self.state_path)  # one rename: `make status` never reads half a file

    def stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            self.save()
            returncode = self._wait()
            if self.stopping:
                break
            lived = time.monotonic() - started
            failures = 0 if lived >= STABLE_S else failures + 1
            self.state.update(last_exit=describe_exit(returncode), last_exit_at=time.time())
            if failures >= self.limit:
                self.state["gave_up"] = True
                self.save()
                self.say("service_gave_up", exit=describe_exit(returncode), failures_in_a_row=failures)
                return 1
            wait = min(self.max_wait, 2.0 ** max(0, failures - 1))
            self.say(
                "service_exited", exit=describe_exit(returncode), lived_s=round(lived, 1), restart_in_s=wait
            )
            self.state["restarts"] += 1
            self.save()
            if self._sleep(wait):
                break
            self.say("service_restarted", restarts=self.state["restarts"])
        self.child = None
        self.save()
        return 0

    def _wait(self) -> int:
        """The child's exit status; once asked to stop, SIGKILL after STOP_GRACE_S if it lingers."""
        assert self.child is not None
        stop_seen: float | None = None
        while True:
            try:
                return self.child.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:  # SIGINT when not handled yet: treat as a stop
                self.stop(signal.SIGINT, None)
            if self.stopping:
                stop_seen = stop_seen or time.monotonic()
                if time.monotonic() - stop_seen > STOP_GRACE_S:
                    self.child.kill()

    def _sleep(self, seconds: float) -> bool:
        """Wait before a restart; True when asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.stopping


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    name, run_dir, command = argv[0], Path(argv[1]), argv[3:]
    return Supervisor(name, run_dir, command).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

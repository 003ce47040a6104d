"""Postgres and Redis on this box for `make up-scaled`, so two QS and two gateways really share their state.

`up` starts what is not already configured (QS_STORE_URL, CAIRN_REDIS_URL in the environment or .env) and
prints `export` lines for stack.sh; `down` stops what `up` started. Data stays under .run/ between runs:
PostgreSQL 16 with pgvector from the `pgserver` wheel, Debian's redis-server (installed when missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from cairn_testing.redis_server import ensure_redis_server
from dotenv import dotenv_values

RUN = Path(".run")
PG_DATA = RUN / "postgres"
REDIS_DIR, REDIS_PID = RUN / "redis", RUN / "redis.pid"
REDIS_PORT = int(os.environ.get("CAIRN_SCALED_REDIS_PORT", "6390"))


def _configured(name: str) -> bool:
    return bool(os.environ.get(name) or dotenv_values(".env").get(name))


def _pg_server(cleanup_mode: str | None) -> object:
    # pgserver asks platformdirs for a runtime dir, which warns where XDG_RUNTIME_DIR is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        # cleanup_mode None: the server outlives this script, as the services do.
        return pgserver.get_server(PG_DATA.resolve(), cleanup_mode=cleanup_mode)


def _redis_alive() -> bool:
    """A pid file left by a crash or a reboot must not stop `up` from starting Redis again."""
    try:
        os.kill(int(REDIS_PID.read_text().strip()), 0)
        return True
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False


def up() -> None:
    if not _configured("QS_STORE_URL"):
        server = _pg_server(None)
        print(f"export QS_STORE_URL='{server.get_uri('postgres')}'")  # type: ignore[attr-defined]
    if not _configured("CAIRN_REDIS_URL"):
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        args = [ensure_redis_server(), "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--daemonize", "yes"]
        args += ["--dir", str(REDIS_DIR.resolve()), "--pidfile", str(REDIS_PID.resolve())]
        args += ["--logfile", str((RUN / "redis.log").resolve())]
        if not _redis_alive():
            REDIS_PID.unlink(missing_ok=True)
            subprocess.run(args, check=True, stdout=sys.stderr)
            for _ in range(50):  # the pid file appears once it listens
                if REDIS_PID.exists():
                    break
                time.sleep(0.1)
        print(f"export CAIRN_REDIS_URL='redis://127.0.0.1:{REDIS_PORT}/0'")


def down() -> None:
    if (PG_DATA / "postmaster.pid").exists():
        _pg_server("stop").cleanup()  # type: ignore[attr-defined]
        print("==> stopped postgres")
    if REDIS_PID.exists():
        try:
            os.kill(int(REDIS_PID.read_text().strip()), 15)
            print("==> stopped redis")
        except (ProcessLookupError, ValueError):
            pass
        REDIS_PID.unlink(missing_ok=True)


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1]]()

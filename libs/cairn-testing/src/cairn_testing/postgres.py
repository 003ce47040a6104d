"""A real PostgreSQL 16 with pgvector for tests and benchmarks: `pgserver` runs one from a pip wheel, in a
temporary folder, listening on a Unix socket only, so nothing needs installing and nothing is shared."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class PostgresServer:
    """One running server; `url()` names a database on it (created on first use), `stop()` removes it all."""

    def __init__(self, root: Path, keep: bool = False) -> None:
        # pgserver asks platformdirs for a runtime dir, which warns where XDG_RUNTIME_DIR is unset (CI).
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            try:
                self._server: Any = pgserver.get_server(root, cleanup_mode=None if keep else "delete")
            except Exception as exc:  # seen once under heavy load: a start that timed out; one more try
                print(f"pgserver start failed ({exc!r}); retrying once", file=sys.stderr)
                time.sleep(1)
                self._server = pgserver.get_server(root, cleanup_mode=None if keep else "delete")
        self.root = root

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser through psql; its printed output."""
        return str(self._server.psql(sql))

    def url(self, database: str = "postgres") -> str:
        if database != "postgres":
            exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
            if "(1 row)" not in exists:
                self.psql(f'CREATE DATABASE "{database}";')
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        self._server.cleanup()


def start_postgres(root: Path | None = None, keep: bool = False) -> PostgresServer:
    """Start a server in `root` (a new temporary folder by default); call `stop()` when done. With `keep`, it
    outlives this process (a benchmark's corpus, measured again later)."""
    return PostgresServer(Path(root or tempfile.mkdtemp(prefix="cairn-pg-")), keep)


@contextmanager
def postgres(root: Path | None = None) -> Iterator[PostgresServer]:
    server = start_postgres(root)
    try:
        yield server
    finally:
        server.stop()

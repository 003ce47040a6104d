"""start_postgres: a real PostgreSQL with pgvector, databases on demand, nothing left behind."""

from __future__ import annotations

from cairn_testing import start_postgres


def test_start_postgres_serves_pgvector_and_cleans_up() -> None:
    server = start_postgres()
    try:
        url = server.url("one")
        assert url.startswith("postgresql://") and server.url("one") == url  # asking again reuses it
        assert "16." in server.psql("SHOW server_version;")
        server.psql("\\c one\nCREATE EXTENSION IF NOT EXISTS vector;")
        assert "\n        1\n(1 row)" in server.psql("\\c one\nSELECT '[1,0]'::vector <=> '[0,1]'::vector;")
    finally:
        server.stop()
    assert not (server.root / "PG_VERSION").exists()

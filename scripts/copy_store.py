"""Copy a SQLite store into PostgreSQL without re-ingesting: documents, chunks, vectors, owners and meta, and
conversations, ratings, the audit chain, collection permissions, API keys and connectors.

    .venv/bin/python scripts/copy_store.py ./.run/cairn-qs.sqlite3 postgresql://cairn:…@db/cairn

The target database must be empty of documents (its schema is created if missing; the `vector` extension
must be installable there). Stop QS writers on the SQLite file first; then set QS_STORE_URL and restart QS.
"""

from __future__ import annotations

import argparse
import sys
import time

from cairn_query.store.copy import TargetNotEmpty, copy_sqlite_to_postgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sqlite_path")
    parser.add_argument("postgres_url")
    parser.add_argument("--batch", type=int, default=2000, help="chunks per statement")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        copied = copy_sqlite_to_postgres(
            args.sqlite_path,
            args.postgres_url,
            args.batch,
            progress=lambda n: print(f"  {n} chunks", file=sys.stderr, flush=True),
        )
    except TargetNotEmpty as exc:
        print(f"copy_store: {exc}", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    print(
        f"copied {copied['documents']} documents, {copied['chunks']} chunks, {copied['vectors']} vectors"
        f" in {took:.1f}s; {copied['conversations']} conversations, {copied['messages']} messages,"
        f" {copied['audit']} audit records, {copied['collection_permissions']} permissions,"
        f" {copied['api_keys']} API keys, {copied['connector_sources']} connectors"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

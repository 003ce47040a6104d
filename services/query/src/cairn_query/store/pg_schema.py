"""The PostgreSQL schema, as the migrations that build it: a store at version N has run the first N, in order,
each once (postgres.py runs them at start, one replica at a time)."""

from cairn_query.store.audit import AUDIT_SCHEMA
from cairn_query.store.base import ORIGINALS_SCHEMA
from cairn_query.store.connectors import CONNECTORS_SCHEMA
from cairn_query.store.conversations import CONVERSATIONS_SCHEMA
from cairn_query.store.permissions import PERMISSIONS_SCHEMA

_SCHEMA_V1 = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'cairn_stem') THEN
        CREATE TEXT SEARCH DICTIONARY cairn_stem (TEMPLATE = snowball, Language = english);
        CREATE TEXT SEARCH CONFIGURATION cairn (COPY = english);
        ALTER TEXT SEARCH CONFIGURATION cairn ALTER MAPPING
            FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH cairn_stem;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    title TEXT,
    url TEXT,
    metadata JSONB NOT NULL DEFAULT '{}',
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS documents_collection ON documents (collection, seq);
CREATE INDEX IF NOT EXISTS documents_seq ON documents (seq);
CREATE TABLE IF NOT EXISTS chunks (
    rowid BIGSERIAL PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv) WITH (fastupdate = off);
CREATE TABLE IF NOT EXISTS vectors (
    chunk_rowid BIGINT NOT NULL REFERENCES chunks (rowid) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (chunk_rowid, n)
);
INSERT INTO meta VALUES ('version', '0') ON CONFLICT DO NOTHING;
"""

MIGRATIONS = [
    _SCHEMA_V1,
    AUDIT_SCHEMA.format(id_type="BIGSERIAL"),
    CONVERSATIONS_SCHEMA.format(id_type="BIGSERIAL"),
    # Each chunk's section path (the headings above it); chunks stored before have none.
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS section TEXT",
    CONNECTORS_SCHEMA,  # connector sources and what each synced (connectors.py)
    # Collection permissions and API keys (permissions.py).
    PERMISSIONS_SCHEMA,
    # Each chunk's page or slide number (PDF, PPTX, scans); chunks stored before have none.
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS page INTEGER",
    # The uploaded file behind a document (PDFs), so a citation can open it at its page.
    ORIGINALS_SCHEMA.format(blob="BYTEA"),
    # Each chunk's and each vector's collection (a copy of its document's, which never changes: a document
    # moved to another collection is written anew), so that a search within collections filters on the row
    # itself (pg_search.py) and a large collection can have a vector index of its own (pg_indexes.py). The
    # vectors are rewritten once without the HNSW index, built again after (far faster than three updates a
    # chunk through the graph).
    """
DO $$
DECLARE indexed BOOLEAN := to_regclass('vectors_hnsw') IS NOT NULL;
BEGIN
    ALTER TABLE chunks ADD COLUMN IF NOT EXISTS collection TEXT;
    UPDATE chunks c SET collection = d.collection FROM documents d WHERE d.id = c.document_id;
    ALTER TABLE chunks ALTER COLUMN collection SET NOT NULL;
    CREATE INDEX IF NOT EXISTS chunks_collection ON chunks (collection);
    DROP INDEX IF EXISTS vectors_hnsw;
    ALTER TABLE vectors ADD COLUMN IF NOT EXISTS collection TEXT;
    UPDATE vectors v SET collection = d.collection FROM chunks c JOIN documents d ON d.id = c.document_id
        WHERE c.rowid = v.chunk_rowid;
    ALTER TABLE vectors ALTER COLUMN collection SET NOT NULL;
    CREATE INDEX IF NOT EXISTS vectors_collection ON vectors (collection);
    IF indexed THEN
        CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding vector_cosine_ops);
    END IF;
END $$;
""",
]
SCHEMA_VERSION = len(MIGRATIONS)

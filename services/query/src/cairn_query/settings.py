"""Query service settings: one pydantic-settings class, env prefix `QS_`, documented in .env.example."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from cairn_core import split_urls
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class QuerySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QS_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8081
    log_level: str = "INFO"
    # Enables /admin/* (reembed, policy reload, audit). CAIRN_ADMIN_TOKEN is the one `make up` writes.
    admin_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("QS_ADMIN_TOKEN", "CAIRN_ADMIN_TOKEN")
    )
    # Shared by the Cairn services: required from callers when set, sent to the gateway (cairn_core _auth).
    internal_token: SecretStr | None = Field(None, validation_alias="CAIRN_INTERNAL_TOKEN")
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"

    # The store (store/): `postgresql://user:pass@host/db` selects PostgreSQL with pgvector; a file path, or
    # unset, the embedded SQLite file at `db_path` (relative to the working directory; `make up` runs from
    # the repository root).
    store_url: str | None = None
    db_path: str = "./.run/cairn-qs.sqlite3"
    # Postgres only: connections per QS process, and HNSW's candidate list per query (recall against speed;
    # recall@10 0.91-0.96 at 100, 0.99 at 200 on 100k chunks, docs/benchmarks.md).
    store_pool_min: int = Field(1, ge=0)
    store_pool_max: int = Field(8, ge=1)
    store_ef_search: int = Field(200, ge=10, le=1000)
    # Postgres only: rows of a keyword match ranked at most (besides those matching every word), and the
    # largest scope (in vectors) searched exactly rather than through the index (store/pg_search.py).
    store_fts_candidates: int = Field(500, ge=50)
    store_exact_max_vectors: int = Field(20_000, ge=0)
    # Batch ingest (POST /v1/documents/batch): documents per group, the unit that is embedded and written at once.
    ingest_group: int = Field(16, ge=1, le=500)
    max_body_bytes: int = Field(12_000_000, ge=1_000)
    max_upload_bytes: int = Field(10_000_000, ge=1_000)

    # Parsing uploads (parsing.py): each HTML or PDF file is read in a child process, killed past these limits
    # (a crafted 30 KB HTML file took html.parser 16 s), with at most `parse_concurrency` at once.
    parse_timeout_s: float = Field(10.0, gt=0)
    parse_memory_mb: int = Field(1024, ge=128)
    parse_concurrency: int = Field(2, ge=1)
    # OCR of images and scanned PDF pages (corpus/formats/ocr.py): PDFs and images are read under these
    # limits instead (a page takes 2-5 s on 2 cores; the models need about 700 MB). Off: images are refused
    # (415) and scanned PDF pages left out. Past `ocr_max_pages` scanned pages of one file, the rest are left out.
    ocr_enabled: bool = True
    ocr_timeout_s: float = Field(120.0, gt=0)
    ocr_memory_mb: int = Field(3072, ge=512)
    ocr_threads: int = Field(2, ge=1)
    ocr_max_pages: int = Field(50, ge=1)
    # An uploaded PDF of at most this many bytes is kept as it is (GET /v1/documents/{id}/original), so a
    # citation opens it at its page (`#page=N`); 0 keeps none.
    max_original_bytes: int = Field(10_000_000, ge=0)

    # Storage limits: one document, and the whole store (SQLite holds every chunk's vectors in memory).
    max_document_chars: int = Field(1_000_000, ge=1_000, le=5_000_000)  # about 1,250 chunks
    max_total_chunks: int = Field(200_000, ge=1)

    # Chunking: sizes in characters (about 4 per token).
    chunk_chars: int = Field(800, ge=100)
    chunk_overlap_chars: int = Field(150, ge=0)
    # Embedding work per document (documents.py): each chunk's vector, and one per sentence for at most this
    # many sentences of a chunk and this many of the document, first chunks first. A 1 MB file of "Ab. " was
    # 1,527 chunks with every sentence embedded: 60 s with the toy embedder, a timeout with the real one.
    # Sentences past the caps are still found through their chunk's vector and BM25, and are embedded when
    # evidence needs them. A 1 MB document of prose has about 7,500 sentences.
    max_sentence_vectors_per_chunk: int = Field(24, ge=0)
    max_sentence_vectors_per_document: int = Field(8_000, ge=0)
    # A document stored while the gateway could not embed it is embedded again every this many seconds
    # (0: only by POST /admin/reembed); until then it is marked `embedded: false`.
    embed_retry_s: float = Field(30.0, ge=0)

    # Retrieval.
    top_k: int = Field(5, ge=1, le=50)
    # Fusion: the sentence-level vectors find paraphrased questions that share no word with their document,
    # which BM25 then outvotes with chance matches; a lighter BM25 and a small k keep its exact-term hits
    # without that (recall@5 0.82 -> 0.99 on the evaluation set, docs/eval.md).
    rrf_k: int = Field(10, ge=1)
    bm25_weight: float = Field(0.3, ge=0.0)
    candidates: int = Field(50, ge=1)  # per list, before fusion
    min_similarity: float = Field(0.35, ge=-1.0, le=1.0)  # a vector hit counts as relevant above this
    context_tokens: int = Field(1500, ge=50)  # budget for whole chunks, when evidence_sentences is 0

    # Conversations (followup.py, prompt_budget.py). A follow-up ("and for Corvale?") is searched as a standalone
    # question: "auto" uses the deterministic rules and asks the model only where they cannot resolve it,
    # "model" asks the model first for every message after the first (the rules when its text is unusable),
    # "rules" never asks it, "off" searches the last user message as it is.
    followup_rewrite: Literal["auto", "model", "rules", "off"] = "auto"
    followup_timeout_ms: int = Field(5_000, ge=1)
    # The whole prompt's budget in tokens (about 4 characters each): the sources always go whole, the
    # conversation's newest turns fill what is left, and older turns are dropped. Below the gateway's
    # context (LLM_CONTEXT_SIZE, 4096) less its answer's max_tokens (256) and its own instructions.
    prompt_tokens: int = Field(3000, ge=100)

    # Evidence and honesty (evidence.py, cairn_core check_support); calibrated in docs/eval.md.
    evidence_sentences: int = Field(6, ge=0, le=9)  # sentences sent to the model; 0 = whole chunks
    evidence_lexical_weight: float = Field(0.3, ge=0.0)
    min_evidence: float = Field(0.41, ge=-2.0, le=2.0)  # below it the documents do not answer: NO_CONTEXT
    # From here up the evidence is strong enough to answer; between the two, the closest passages are shown
    # instead of an answer (WEAK_EVIDENCE). 0.60: `make calibrate` on the tune half of the real-document set
    # with Gemma 3 270M and MiniLM (docs/eval.md); below QS_MIN_EVIDENCE it has no effect.
    answer_evidence: float = Field(0.60, ge=-2.0, le=2.0)
    # Below QS_MIN_EVIDENCE, the closest passages are still shown (not NO_CONTEXT, "I could not find anything
    # about this") when a chunk they come from is this similar to the question: the documents are about it.
    # 0.5: chosen on the tune halves of both sets (docs/eval.md); it moves no answer, only what a refusal shows.
    passages_similarity: float = Field(0.5, ge=-1.0, le=2.0)
    support_min_overlap: float = Field(0.6, ge=0.0, le=1.0)  # share of a sentence's words in its sources

    # Gateway.
    # `QS_LLM_URL` / `QS_LLM_MODEL` are accepted too: the names other RAG stacks use for the same two settings.
    # With an explicit alias the prefix no longer applies, so the canonical env name is listed first (it wins).
    gateway_url: str = Field(
        "http://127.0.0.1:8082", validation_alias=AliasChoices("QS_GATEWAY_URL", "QS_LLM_URL")
    )
    # Several gateway replicas, comma-separated: calls take turns and a retry goes to another replica. Set,
    # it replaces QS_GATEWAY_URL.
    gateway_urls: str = ""
    # The alias sent as `model`; None = the gateway's default.
    model: str | None = Field(None, validation_alias=AliasChoices("QS_MODEL", "QS_LLM_MODEL"))
    max_tokens: int | None = Field(None, ge=1)
    gateway_timeout_ms: int = Field(30_000, ge=1)  # whole generation
    first_token_timeout_ms: int = Field(15_000, ge=1)  # until the gateway's first byte
    # Per /v1/embed call of up to 64 texts; a bigger call gets as much again per 64 texts it holds.
    embed_timeout_ms: int = Field(10_000, ge=1)
    # Texts per /v1/embed call: a document's vectors go in as few calls as this allows. At most the gateway's
    # LLM_MAX_EMBED_INPUTS (256), or every call of more texts is refused.
    embed_batch_inputs: int = Field(256, ge=1)
    retries: int = Field(2, ge=0)  # before the first byte only
    retry_wait_ms: int = Field(100, ge=0)
    circuit_failures: int = Field(5, ge=1)
    circuit_reset_ms: int = Field(10_000, ge=1)

    # Governance (docs/governance.md). The policy: a YAML file of rules; unset, the shipped default, which
    # changes no answer. Checked for changes every `policy_watch_s` seconds (0: only POST /admin/policy/reload).
    policy_file: str | None = None
    policy_watch_s: float = Field(2.0, ge=0)
    # The audit log, in the store: whole days kept (0: forever); fail closed = no answer without its record.
    audit_enabled: bool = True
    audit_retention_days: int = Field(90, ge=0)
    audit_fail_closed: bool = False

    # Connectors (connectors/, docs/connectors.md): configured sources synced on their schedule. This replica's
    # scheduler looks for due sources every `connectors_tick_s` (off: runs only when asked, by the API); a
    # run holds a lease in the store for `connectors_lease_s`, renewed while it runs, so one replica runs a
    # source. Git clones go under `connectors_cache_dir` (default: `connectors/` beside the SQLite file).
    connectors_scheduler: bool = True
    connectors_tick_s: float = Field(5.0, gt=0)
    connectors_lease_s: float = Field(60.0, ge=1)
    connectors_cache_dir: str | None = None
    connectors_timeout_s: float = Field(30.0, gt=0)  # one HTTP request or git command
    connectors_concurrency: int = Field(4, ge=1)  # items of one run read, parsed and embedded at once
    connectors_watch_debounce_ms: int = Field(300, ge=10)  # folder events gathered this long into one run
    # Comma-separated folders that folder sources and local Git paths must lie in; empty: any folder QS's user
    # can read (the admin token is then the only gate).
    connectors_folder_roots: str = ""

    # Answer cache: in process (LRU of `cache_size` entries), or in Redis when CAIRN_REDIS_URL is set, shared
    # by every QS replica (Redis's maxmemory policy bounds it then; `cache_size` 0 still turns it off).
    cache_size: int = Field(1024, ge=0)  # 0 = off
    cache_ttl_s: float = Field(3600.0, gt=0)
    # Shared state (docs/operations.md). Unreachable at startup: QS refuses to start; later: a cache miss.
    redis_url: SecretStr | None = Field(None, validation_alias="CAIRN_REDIS_URL")

    @cached_property
    def gateway_url_list(self) -> list[str]:
        return split_urls(self.gateway_urls, self.gateway_url)

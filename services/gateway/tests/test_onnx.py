"""The ONNX embedder in process: MiniLM embeddings, the real model from its PyPI package. Fast enough to run
everywhere, so not marked `model`."""

from __future__ import annotations

import numpy as np
import pytest
from cairn_gateway.providers.onnx_embed import MAX_TOKENS, OnnxEmbedder, mean_pool
from cairn_gateway.settings import GatewaySettings


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    e = OnnxEmbedder(GatewaySettings(embed_batch_size=4))
    e._load()  # the blocking part of start(), without an event loop
    return e


def test_similarity_ordering(embedder: OnnxEmbedder) -> None:
    v, tokens = embedder.embed_sync(
        ["The cat sits on the mat", "A feline rests on a rug", "Stock markets fell sharply today"]
    )
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) == pytest.approx(0.55, abs=0.05)
    assert float(v[0] @ v[2]) == pytest.approx(0.05, abs=0.05)
    assert tokens == 24  # [CLS] … [SEP] of each sentence, padding not counted


def test_batching_and_padding_do_not_change_vectors(embedder: OnnxEmbedder) -> None:
    texts = [f"Sentence number {i} " + "word " * (i % 7) for i in range(10)]
    together, _ = embedder.embed_sync(texts)  # batches of 4 with padding to the longest
    alone = np.concatenate([embedder.embed_sync([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=2e-3)


def test_texts_batched_by_length_come_back_in_their_own_order(embedder: OnnxEmbedder) -> None:
    # Longest first and interleaved, so the length-sorted batches hold other texts than the input's runs of 4.
    texts = ["chunk " * (60 - 5 * i) if i % 3 == 0 else f"Short sentence {i}." for i in range(12)]
    together, tokens = embedder.embed_sync(texts)
    alone = [embedder.embed_sync([t]) for t in texts]
    assert np.allclose(together, np.concatenate([v for v, _ in alone]), atol=2e-3)
    assert tokens == sum(n for _, n in alone)  # real tokens only: each batch is padded to its own longest


def test_a_request_is_batched_by_length_not_padded_to_its_longest_text(embedder: OnnxEmbedder) -> None:
    # One document's request: its chunk, then its sentences (batches of 4 here).
    texts = ["Leave policy\n" + "Employees get leave. " * 30] + [f"Leave rule {i} applies." for i in range(6)]
    encodings, batches = embedder._plan(texts)
    assert sorted(i for batch in batches for i in batch) == list(range(7))
    assert batches[-1] == [0]  # the chunk alone: the sentences are not padded to its length
    for batch in batches:
        lengths = [len(encodings[i].ids) for i in batch]
        assert max(lengths) <= min(lengths) * 1.5 + 8


def test_long_input_is_truncated_not_rejected(embedder: OnnxEmbedder) -> None:
    v, tokens = embedder.embed_sync(["word " * 2000])
    assert v.shape == (1, 384) and tokens == MAX_TOKENS


async def test_async_embed_and_empty_input() -> None:
    e = OnnxEmbedder(GatewaySettings(embed_batch_size=4))
    await e.start()
    try:
        assert await e.embed([]) == ([], 0)
        vectors, _ = await e.embed(["hello"])
        assert len(vectors) == 1 and len(vectors[0]) == 384
        # Batch by batch through the executor: the same vectors, in the request's order, as in one go.
        texts = ["chunk " * (40 - 3 * i) if i % 4 == 0 else f"Sentence {i}." for i in range(11)]
        vectors, tokens = await e.embed(texts)
        expected, expected_tokens = e.embed_sync(texts)
        assert np.array_equal(np.asarray(vectors, np.float32), expected) and tokens == expected_tokens
    finally:
        await e.aclose()


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert np.allclose(mean_pool(hidden, mask), [[1.0, 0.0]])

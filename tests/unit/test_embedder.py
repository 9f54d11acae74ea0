"""The ONNX int8 embedder against vectors sentence-transformers (fp32) computed once
(tests/data/minilm_reference.json, made by scripts/make_embedder_reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rung.classifiers.embedder import OnnxEmbedder, mean_pool
from rung.weights.catalog import CATALOG
from rung.weights.fetch import default_models_dir, is_verified

REFERENCE = json.loads((Path(__file__).parents[1] / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    model = CATALOG["minilm-l6-int8"]
    path = default_models_dir() / model.filename
    if not is_verified(model, path):
        pytest.fail("the embedder is not installed: run `rung models fetch minilm-l6-int8`")
    return OnnxEmbedder(path)


def test_matches_sentence_transformers(embedder: OnnxEmbedder) -> None:
    ours = embedder.embed(REFERENCE["texts"])
    reference = np.array(REFERENCE["vectors"], dtype=np.float32)
    cosine = (ours * reference).sum(axis=1)
    assert ours.shape == reference.shape == (len(REFERENCE["texts"]), 384)
    assert cosine.min() > 0.99, cosine  # int8 weights: measured mean ~0.999
    assert cosine.mean() > 0.995
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_a_vector(embedder: OnnxEmbedder) -> None:
    texts = REFERENCE["texts"]
    alone = np.vstack([embedder.embed([t]) for t in texts])
    together = embedder.embed(texts)
    np.testing.assert_allclose(alone, together, atol=1e-4)


def test_neighbours_are_sensible(embedder: OnnxEmbedder) -> None:
    a, b, c = embedder.embed(
        [
            "How do I bake bread?",
            "What is a recipe for baking bread?",
            "The stock market fell sharply today.",
        ]
    )
    assert a @ b > a @ c + 0.3


def test_mean_pool_ignores_padding() -> None:
    hidden = np.array([[[1, 0], [3, 0], [100, 100]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    np.testing.assert_allclose(mean_pool(hidden, mask), [[1.0, 0.0]])

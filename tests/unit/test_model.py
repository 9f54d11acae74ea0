"""The difficulty model: fitting, the no-pickle round trip, refusing a foreign embedder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rung.classifiers.embedder import expected_identity
from rung.classifiers.features import FEATURE_NAMES
from rung.classifiers.model import ModelError, load, resolve
from rung.classifiers.train import fit_linear, train

EMBEDDER = {"name": "test-embedder", "sha256": "abc"}
TIERS = [
    {"name": "small", "model": "s", "price": 0.1},
    {"name": "large", "model": "l", "price": 0.9},
]


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Prompts whose first embedding coordinate decides whether the small tier can do them."""
    rng = np.random.default_rng(seed)
    easy = rng.random(n) < 0.5
    emb = rng.normal(size=(n, 8))
    emb[:, 0] = np.where(easy, 4.0, -4.0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.column_stack([easy & (rng.random(n) < 0.9), rng.random(n) < 0.95]).astype(float)
    others = np.column_stack([easy, easy, rng.random(n) < 0.5]).astype(float)
    texts = [f"question {i}" for i in range(n)]
    return emb, texts, scores, others


@pytest.mark.parametrize("method", ["logistic", "difficulty", "blend"])
def test_every_method_learns_which_prompts_are_easy(method):
    emb, texts, scores, others = synthetic()
    model = train(emb, texts, scores, others, TIERS, EMBEDDER, method)
    test_emb, test_texts, *_ = synthetic(200, seed=1)
    p = model.predict(test_emb, test_texts)
    easy = test_emb[:, 0] > 0
    assert p.shape == (200, 2)
    assert p[easy, 0].mean() > 0.75
    assert p[~easy, 0].mean() < 0.3
    assert 0.85 < p[:, 1].mean() < 1.0  # the large tier is good at everything


def test_a_tier_that_always_succeeds_gets_a_constant():
    x = np.random.default_rng(0).normal(size=(50, 4))
    w, b = fit_linear(x, np.ones((50, 1)), np.zeros((50, 0)), "logistic")
    assert np.all(w == 0)
    assert 1 / (1 + np.exp(-b[0])) == pytest.approx(0.99)


def test_round_trip_without_pickle(tmp_path: Path):
    emb, texts, scores, others = synthetic()
    model = train(emb, texts, scores, others, TIERS, EMBEDDER, training={"prompts": 400})
    model.save(tmp_path / "clf")
    with zipfile.ZipFile(tmp_path / "clf" / "weights.npz") as zf:
        assert sorted(zf.namelist()) == [
            "bias.npy",
            "feature_mean.npy",
            "feature_scale.npy",
            "trained_texts.npy",
            "weights.npy",
        ]
    manifest = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    assert manifest["embedder"] == EMBEDDER
    assert manifest["features"] == list(FEATURE_NAMES)
    assert manifest["training"]["prompts"] == 400
    loaded = load(tmp_path / "clf", EMBEDDER)
    np.testing.assert_array_equal(loaded.predict(emb, texts), model.predict(emb, texts))


def test_loading_refuses_another_embedder(tmp_path: Path):
    emb, texts, scores, others = synthetic()
    train(emb, texts, scores, others, TIERS, EMBEDDER).save(tmp_path / "clf")
    with pytest.raises(ModelError, match="fitted on embedder"):
        load(tmp_path / "clf", {"name": "test-embedder", "sha256": "different"})


def test_broken_directories_are_errors_not_crashes(tmp_path: Path):
    with pytest.raises(ModelError, match="cannot load"):
        load(tmp_path)
    emb, texts, scores, others = synthetic()
    train(emb, texts, scores, others, TIERS, EMBEDDER).save(tmp_path / "clf")
    manifest = json.loads((tmp_path / "clf" / "manifest.json").read_text())
    manifest["tiers"] = manifest["tiers"][:1]
    (tmp_path / "clf" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not match"):
        load(tmp_path / "clf")


def test_the_shipped_production_classifier_resolves_by_name():
    model = load(resolve("production"))
    assert model.tier_names == ["small", "medium", "large", "xlarge"]
    assert model.embedder == expected_identity("static-minilm-l6")
    # fitted on its train split only; its held-out splits ride along for goals and reports
    assert set(model.held) == {"validation", "test"}
    assert model.held["test"].probabilities.shape == (model.training["split"]["test"], 4)
    assert len(model.trained_texts) == model.training["split"]["train"]
    with pytest.raises(ModelError, match="shipped"):
        resolve("no-such-classifier")


def test_serving_prediction_is_the_design_matrix_product() -> None:
    """predict() splits the product to avoid a copy; it must equal the fitted design's."""
    from rung.classifiers.model import sigmoid

    emb, texts, scores, others = synthetic(120)
    model = train(emb, texts, scores, others, TIERS, EMBEDDER, "blend")
    got = model.predict(emb.astype(np.float32), texts)
    want = sigmoid(model.design(emb, texts) @ model.weights.T + model.bias)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.shape == (120, 2)

"""The static embedder that serves by default: its table (distilled by `rung models fetch`),
pooling, the distillation's post-processing, and the integrity check on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rung.classifiers import static
from rung.classifiers.embedder import expected_identity, open_embedder
from rung.weights.fetch import default_models_dir


@pytest.fixture(scope="module")
def served() -> static.StaticEmbedder:
    if static.load_table(default_models_dir() / static.FILENAME) is None:
        pytest.fail("the static embedder is not built: run `rung models fetch`")
    embedder, identity = open_embedder(static.NAME, default_models_dir(), allow_fetch=False)
    assert identity == expected_identity(static.NAME)
    assert isinstance(embedder, static.StaticEmbedder)
    return embedder


def test_the_served_table_gives_unit_vectors_that_know_topics(served: static.StaticEmbedder):
    a, b, c = served.embed(
        [
            "How do I bake bread at home?",
            "What is a good recipe for homemade bread?",
            "The central bank raised interest rates again.",
        ]
    )
    assert served.dimension == static.DIMENSION == a.shape[0]
    np.testing.assert_allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0, atol=1e-5)
    assert a @ b > a @ c + 0.2
    assert served.inline  # cheap enough for the event loop


def test_a_text_is_the_normalised_mean_of_its_token_rows():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30522, 8)).astype(np.float32)
    embedder = static.StaticEmbedder(table)
    text = "Paris is the capital of France"
    ids = embedder.token_ids(text)
    assert ids
    assert 101 not in ids  # [CLS] and [SEP] do not count
    assert 102 not in ids
    expected = table[ids].mean(axis=0)
    np.testing.assert_allclose(embedder.embed([text])[0], expected / np.linalg.norm(expected))
    assert not embedder.embed([""]).any()  # no tokens: a zero vector, not NaN


def test_huge_texts_are_bounded():
    embedder = static.StaticEmbedder(np.ones((30522, 4), dtype=np.float32))
    assert len(embedder.token_ids("word " * 100_000)) <= static.MAX_TOKENS


def test_finish_centres_rotates_and_weights_deterministically():
    raw = np.random.default_rng(1).normal(size=(300, 300)) + 5.0
    first, second = static.finish(raw), static.finish(raw.copy())
    np.testing.assert_array_equal(first, second)
    assert first.shape == (300, static.DIMENSION)
    assert not first[0].any()  # rank 0 weighs nothing: log(1 + 0)
    # without the weights, the columns are centred and uncorrelated (principal axes)
    unweighted = first[1:] / np.log1p(np.arange(1, 300))[:, None]
    centred = raw - raw.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    rotated = (centred @ axes[: static.DIMENSION].T)[1:]
    np.testing.assert_allclose(np.abs(unweighted), np.abs(rotated), rtol=1e-4, atol=1e-4)


def test_a_corrupted_table_is_not_loaded(tmp_path: Path):
    path = tmp_path / static.FILENAME
    np.save(path, np.ones((4, 2), dtype=np.float32))
    assert static.load_table(path) is None  # no stamp
    stamp = path.with_name(path.name + ".sha256")
    stamp.write_text(json.dumps({"sha256": "0" * 64}))
    assert static.load_table(path) is None  # wrong stamp
    with pytest.raises(FileNotFoundError, match="rung models fetch"):
        static.open_static(path, "teacher", tmp_path, allow_build=False)

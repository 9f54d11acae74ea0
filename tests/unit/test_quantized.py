"""The cache's embedder: MiniLM re-quantized for int8 arithmetic (built by `rung models fetch`),
its closeness to the packaged teacher, its reproducible build and the integrity check on load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rung.classifiers import quantized
from rung.classifiers.embedder import OnnxEmbedder, expected_identity, open_embedder
from rung.weights.catalog import CATALOG
from rung.weights.fetch import default_models_dir
from rung.weights.stamp import intact, stamp_path

TEXTS = [
    "How do I bake bread at home?",
    "What is a good recipe for homemade bread?",
    "The central bank raised interest rates again.",
    "How many cores does the Ryzen 9 7950X have?",
]


@pytest.fixture(scope="module")
def served() -> OnnxEmbedder:
    if not quantized.is_built(default_models_dir()):
        pytest.fail("the quantized embedder is not built: run `rung models fetch`")
    embedder, identity = open_embedder(quantized.NAME, default_models_dir(), allow_fetch=False)
    assert identity == expected_identity(quantized.NAME)
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


def test_its_vectors_stay_close_to_the_teachers_and_know_topics(served: OnnxEmbedder):
    teacher, _ = open_embedder(quantized.TEACHER, default_models_dir(), allow_fetch=False)
    mine, theirs = served.embed(TEXTS), teacher.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    closeness = (mine * theirs).sum(axis=1)
    assert closeness.min() > 0.97, closeness  # int8 arithmetic, not another model
    assert closeness.max() < 0.99999  # ...but not the teacher's fp32 vectors either
    assert mine[0] @ mine[1] > mine[0] @ mine[2] + 0.3


def test_its_identity_is_the_recipe_and_the_teacher_not_the_bytes():
    teacher = CATALOG[quantized.TEACHER].sha256
    assert quantized.identity(teacher) == expected_identity(quantized.NAME)
    assert quantized.identity(teacher)["sha256"] != teacher
    assert quantized.identity(teacher) != quantized.identity("0" * 64)


def test_a_build_is_reproducible_and_stamped(tmp_path: Path):
    models = default_models_dir()
    teacher = CATALOG[quantized.TEACHER]
    target = tmp_path / quantized.FILENAME
    quantized.build(models / teacher.filename, target, teacher.sha256)
    assert intact(target)
    record = json.loads(stamp_path(target).read_text())
    assert record["recipe"] == quantized.RECIPE
    assert record["teacher"] == teacher.sha256
    installed = json.loads(stamp_path(models / quantized.FILENAME).read_text())
    assert record["sha256"] == installed["sha256"]  # the same bytes as `rung models fetch` built
    assert not list(tmp_path.glob(".*partial*"))


def test_a_corrupted_file_is_not_loaded(tmp_path: Path):
    path = tmp_path / quantized.FILENAME
    path.write_bytes(b"not a model")
    assert not quantized.is_built(tmp_path)  # no stamp
    stamp_path(path).write_text(json.dumps({"sha256": "0" * 64}))
    assert not quantized.is_built(tmp_path)  # wrong stamp
    with pytest.raises(FileNotFoundError, match="rung models fetch"):
        quantized.open_quantized(path, "teacher", tmp_path, allow_build=False)

"""The hit verifier's fitting pieces: the split by question, the tree export, the error budget's
threshold, the rule-made pairs' word lists. Table-driven where it can be."""

from __future__ import annotations

import numpy as np
import pytest

from rung.cache import edits
from rung.cache.fit import export, split_by_question, wilson
from rung.cache.verifier import threshold_for, upper_bound


@pytest.mark.parametrize(
    ("wrong", "total", "bound"),
    [(0, 300, 0.00994), (1, 523, 0.00904), (5, 1000, 0.01048), (0, 0, 1.0), (3, 3, 1.0)],
)
def test_clopper_pearson_upper_bound(wrong: int, total: int, bound: float) -> None:
    assert upper_bound(wrong, total) == pytest.approx(bound, abs=2e-5)


def test_the_threshold_serves_no_more_wrong_candidates_than_the_budget_allows() -> None:
    rng = np.random.default_rng(0)
    same = rng.random(20_000) < 0.5
    scores = np.where(same, rng.beta(5, 2, 20_000), rng.beta(2, 5, 20_000))
    t = threshold_for(scores, same, 0.01)
    assert t is not None
    served_wrong = int((scores[~same] >= t).sum())
    assert upper_bound(served_wrong, int((~same).sum())) <= 0.01
    assert upper_bound(served_wrong + 1, int((~same).sum())) > 0.01  # and no stricter than needed
    assert 0.0 < (scores[same] >= t).mean() < 1.0


def test_too_few_wrong_pairs_can_promise_nothing() -> None:
    scores = np.array([0.9, 0.8, 0.1])
    same = np.array([True, True, False])
    assert threshold_for(scores, same, 0.01) is None  # one wrong pair: the bound is 0.95


def test_pairs_sharing_a_question_share_a_split() -> None:
    pairs = [("q1", "q2"), ("q2", "q3"), ("Q3 ", "q4")] + [(f"a{i}", f"b{i}") for i in range(300)]
    names = split_by_question(pairs)
    assert names[0] == names[1] == names[2]  # q1-q2-q3-q4 are one component (case, spaces)
    counts = {n: names.count(n) for n in set(names)}
    assert set(counts) == {"train", "calibration", "test"}
    assert counts["train"] > counts["test"]


def test_exported_trees_predict_what_sklearn_predicts() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 5))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, max_depth=4, random_state=0).fit(x, y)
    trees = export(model)
    ours = 1 / (1 + np.exp(-trees.raw(x)))
    np.testing.assert_allclose(ours, model.predict_proba(x)[:, 1], atol=1e-6)


def test_train_and_test_edits_use_disjoint_word_lists() -> None:
    for kind, pairs in edits._SWAPS.items():
        train = {w for p in edits._half(pairs, "train") for w in p}
        test = {w for p in edits._half(pairs, "test") for w in p}
        assert not train & test, kind
    questions = [
        "What is the best way to learn python in 3 weeks?",
        "How do I convert km to miles?",
    ]
    train = {(p.b, p.kind) for p in edits.generate(questions, "train")}
    test = {(p.b, p.kind) for p in edits.generate(questions, "test")}
    assert ("What is the worst way to learn python in 3 weeks?", "rule-antonym") in train
    assert ("How do I convert miles to km?", "rule-order") in train
    assert "How do I convert km to km?" not in {b for b, _ in train | test}
    rules = {(b, k) for b, k in train | test if k.startswith("rule-")}
    assert not {x for x in train if x in rules} & {x for x in test if x in rules}


def test_wilson_interval() -> None:
    low, high = wilson(5, 100)
    assert low < 0.05 < high
    assert wilson(0, 0) == (0.0, 1.0)

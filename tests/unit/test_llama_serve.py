"""The linear-time top-logprobs selection patched into llama-cpp-python's server."""

from __future__ import annotations

import numpy as np
import pytest

from rung.backends.local.llama_serve import TOP, top_sorted


@pytest.mark.parametrize("as_list", [True, False])
def test_top_sorted_matches_the_full_sort_prefix(as_list: bool) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000).astype(np.float32)
    values[[10, 20, 30]] = values.max() + 1  # ties are ordered by index, descending, as in sorted()
    data = values.tolist() if as_list else values
    expected = sorted(zip(data, range(len(data)), strict=True), reverse=True)[:TOP]
    got = top_sorted(zip(data, range(len(data)), strict=True), reverse=True)
    assert got == expected
    assert [i for _, i in got[:3]] == [30, 20, 10]


def test_other_calls_fall_through_to_the_builtin() -> None:
    assert top_sorted([3, 1, 2]) == [1, 2, 3]
    assert top_sorted([3, 1, 2], reverse=True) == [3, 2, 1]
    assert top_sorted(["b", "a"], key=str.upper) == ["a", "b"]
    values = [float(v) for v in range(200)]
    # A zip whose second part is not range(len(values)) is not a vocabulary.
    pairs = zip(values, range(5, 205), strict=True)
    assert top_sorted(pairs, reverse=True)[0] == (199.0, 204)
    # A partly consumed zip is sorted in full, from where it stands.
    it = zip(values, range(200), strict=True)
    next(it)
    assert len(top_sorted(it, reverse=True)) == 199

"""Shadow checks' judge and interval (pure)."""

from __future__ import annotations

import pytest

from rung.router.shadow import agree, wilson


@pytest.mark.parametrize(
    ("served", "reference", "same"),
    [
        ("The answer is 4.", "4", True),
        ("So 2+2 = 5", "The answer: 4", False),
        ("Answer: B", "The correct option is (B)", True),
        ("Answer: C", "The correct option is (B)", False),
        ("Paris.", "paris", True),
        ("Lyon", "Paris", False),
    ],
)
def test_agreement(served: str, reference: str, same: bool) -> None:
    assert agree(served, reference) is same


def test_wilson_interval() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(6, 10)
    assert low == pytest.approx(0.3127, abs=1e-3)
    assert high == pytest.approx(0.8318, abs=1e-3)
    low, high = wilson(990, 1000)
    assert 0.98 < low < 0.99 < high < 1.0

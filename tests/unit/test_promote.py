"""The promotion rule (pure): no worse and cheaper, better at no more cost, or meeting the goal
the serving classifier misses; everything else refused."""

from __future__ import annotations

import pytest

from rung.classifiers.promote import Figures, meets, verdict

SERVING = Figures(keep=0.96, cost_share=0.60, cost_at_95=0.55)


@pytest.mark.parametrize(
    ("candidate", "promote", "reason"),
    [
        (Figures(0.96, 0.50, 0.45), True, "no worse on quality and cheaper"),
        (Figures(0.958, 0.50, 0.45), True, "no worse on quality and cheaper"),  # within tolerance
        (Figures(0.98, 0.60, 0.50), True, "better on quality at no more cost"),
        (Figures(0.96, 0.60, 0.55), False, "refused: costs 0.600 against 0.600"),
        (Figures(0.98, 0.70, 0.50), False, "refused: costs 0.700 against 0.600"),
        (Figures(0.93, 0.30, 0.40), False, "refused: misses keep:0.95"),
    ],
)
def test_verdicts(candidate: Figures, promote: bool, reason: str) -> None:
    got = verdict(SERVING, candidate, 100, "keep:0.95")
    assert got.promote is promote
    assert got.reason.startswith(reason)


def test_meeting_the_goal_the_serving_one_misses_wins_even_if_dearer() -> None:
    missing = Figures(0.80, 0.10, 0.90)
    assert verdict(missing, Figures(0.96, 0.70, 0.60), 50).promote
    assert meets("max_cost_share:0.5", Figures(0.9, 0.5, 0.6))
    assert not meets("max_cost_share:0.5", Figures(0.9, 0.6, 0.6))

"""The routing decision: a pure function from per-tier success probabilities to a tier.

Used by the gateway (rung.router.decide) and by offline evaluation alike, so that what is
measured is exactly what serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def choose_tier(
    probabilities: Sequence[float],
    prices: Sequence[float],
    target: float,
    allowed: Sequence[int] | None = None,
) -> tuple[int, str]:
    """The cheapest allowed tier whose probability meets the target; if none does, the allowed
    tier with the highest probability (cheapest on ties). Returns (tier, reason)."""
    candidates = list(range(len(probabilities))) if allowed is None else list(allowed)
    if not candidates:
        raise ValueError("no tier is allowed")
    by_price = sorted(candidates, key=lambda i: (prices[i], i))
    for tier in by_price:
        if probabilities[tier] >= target:
            return tier, "meets-target"
    best = max(by_price, key=lambda i: probabilities[i])
    return best, "best-available"


def choose_tiers(
    probabilities: npt.NDArray[np.float64], prices: npt.NDArray[np.float64], target: float
) -> npt.NDArray[np.int64]:
    """`choose_tier` for many prompts at once (all tiers allowed): [prompts, tiers] -> [prompts]."""
    order = np.argsort(prices, kind="stable")
    ordered = probabilities[:, order]
    meets = ordered >= target
    first = np.argmax(meets, axis=1)
    best = np.argmax(ordered, axis=1)
    return np.asarray(order[np.where(meets.any(axis=1), first, best)], dtype=np.int64)

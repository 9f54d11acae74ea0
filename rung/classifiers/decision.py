"""The routing decision: pure functions from per-tier success probabilities to a tier.

Used by the gateway (rung.router.decide) and by offline evaluation alike, so that what is
measured is exactly what serves.

The rule is expected utility: per prompt, the allowed tier that maximises
`P(success) - lambda * relative_cost`, where a tier's relative cost is its price over the dearest
allowed price. `lambda` is the price of quality: 0 buys the most probable tier whatever it
costs, large values buy the cheapest. A dearer tier that is no more likely to succeed never wins
(it loses utility and gains nothing), which a price-ordered threshold cannot see: on MMLU-Pro,
Mixtral-8x7B scores like Phi-3-mini at 6x the price. Ties go to the cheaper tier.

`choose_tier_by_threshold` is the older rule (cheapest tier whose probability meets a target),
kept for configs that still set `routing.quality_target`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def relative_costs(prices: Sequence[float], allowed: Sequence[int]) -> list[float]:
    top = max(prices[i] for i in allowed)
    return [p / top if top > 0 else 0.0 for p in prices]


def choose_tier(
    probabilities: Sequence[float],
    prices: Sequence[float],
    lam: float,
    allowed: Sequence[int] | None = None,
) -> tuple[int, str]:
    """The allowed tier with the highest P(success) - lam * price/max_price (cheapest on
    ties). Returns (tier, reason)."""
    candidates = list(range(len(probabilities))) if allowed is None else list(allowed)
    if not candidates:
        raise ValueError("no tier is allowed")
    costs = relative_costs(prices, candidates)
    by_price = sorted(candidates, key=lambda i: (prices[i], i))
    best = max(by_price, key=lambda i: probabilities[i] - lam * costs[i])
    most_likely = max(by_price, key=lambda i: probabilities[i])
    if best == most_likely:
        return best, "most-likely" if best != by_price[0] else "cheapest-is-best"
    return best, "best-value"


def prefer_spare(
    probabilities: Sequence[float],
    prices: Sequence[float],
    lam: float,
    chosen: int,
    allowed: Sequence[int],
    load: Sequence[float],
    margin: float = 0.02,
    busy: float = 0.75,
) -> int:
    """Latency-aware tie-break: when the chosen tier is busy (at least `busy` of its capacity in
    use), the allowed tier with the most spare capacity among those *as likely to succeed* and
    within `margin` of the chosen one's utility. Never a tier less likely to succeed, so the
    quality goal is not paid for; `load[i]` is tier i's share of capacity in use."""
    if load[chosen] < busy:
        return chosen
    costs = relative_costs(prices, allowed)
    best = probabilities[chosen] - lam * costs[chosen]
    peers = [
        i
        for i in allowed
        if probabilities[i] >= probabilities[chosen]
        and probabilities[i] - lam * costs[i] >= best - margin
        and load[i] < load[chosen]
    ]
    return min(peers, key=lambda i: (load[i], prices[i])) if peers else chosen


def choose_tiers(probabilities: Array, prices: Array, lam: float) -> npt.NDArray[np.int64]:
    """`choose_tier` for many prompts at once (all tiers allowed): [prompts, tiers] -> [prompts]."""
    order = np.argsort(prices, kind="stable")
    costs = prices[order] / prices.max()
    utility = probabilities[:, order] - lam * costs
    return np.asarray(order[np.argmax(utility, axis=1)], dtype=np.int64)


def choose_tier_by_threshold(
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


def choose_tiers_by_threshold(
    probabilities: Array, prices: Array, target: float
) -> npt.NDArray[np.int64]:
    """`choose_tier_by_threshold` for many prompts at once (all tiers allowed)."""
    order = np.argsort(prices, kind="stable")
    ordered = probabilities[:, order]
    meets = ordered >= target
    first = np.argmax(meets, axis=1)
    best = np.argmax(ordered, axis=1)
    return np.asarray(order[np.where(meets.any(axis=1), first, best)], dtype=np.int64)

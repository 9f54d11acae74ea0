"""The shadow guard: keep the goal's promise on traffic the classifier was not fitted on.

A goal (`keep: 0.95`) is met on the classifier's validation split; on a task family it never
saw, routing can keep far less (MATH level 5: 0.60, docs/routing.md). Shadow checks measure
what routing keeps on live traffic. When they show, beyond their 95% interval, that a tenant's
routing keeps less than its goal, the guard holds back the tier whose answers agree least with
the reference tier: for a while, that tenant's routed requests are served as if it were capped
to the other tiers. When the hold ends the tier's evidence starts afresh.

Pure: `next_hold` reads tallies and returns a decision; rung.router.shadow keeps the state.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from rung.cache.fit import wilson


class Evidence(Protocol):
    @property
    def served(self) -> int: ...
    @property
    def sampled(self) -> int: ...
    @property
    def agreed(self) -> int: ...


def keeps_upper(
    tallies: Mapping[str, Evidence], top: str, min_checks: int, held: Collection[str] = ()
) -> float | None:
    """Upper 95% bound of what routing keeps over the tiers not held back (their shares of
    served answers renormalised): a tier with fewer than `min_checks` checks counts as keeping
    everything, so the bound only falls below a goal on evidence. None: nothing served."""
    live = {n: t for n, t in tallies.items() if n not in held and t.served}
    total = sum(t.served for t in live.values())
    if not total:
        return None
    high = 0.0
    for name, t in live.items():
        checked = name != top and t.sampled >= min_checks
        high += t.served / total * (wilson(t.agreed, t.sampled)[1] if checked else 1.0)
    return high


def next_hold(
    tallies: Mapping[str, Evidence],
    top: str,
    keep: float,
    min_checks: int,
    held: Collection[str] = (),
    expected: Mapping[str, float] | None = None,
) -> str | None:
    """The tier to hold back now, or None. Never the reference tier `top`, never on fewer
    than `min_checks` checks of a tier, and only when even the upper bound of what routing
    keeps is below `keep`. Then the tier whose agreement's upper bound falls furthest below
    its bar: `expected` of it (the lower bound of its agreement on the validation split under
    the fitted policy: agreement with the reference is not correctness, so a tier that agreed
    70% of the time there keeps the goal at 70% here), else `keep` itself."""
    high = keeps_upper(tallies, top, min_checks, held)
    if high is None or high >= keep:
        return None
    bars = expected or {}
    below = [
        (upper / bar, name)
        for name, t in tallies.items()
        if name != top and name not in held and t.served and t.sampled >= min_checks
        for bar in [bars.get(name, keep)]
        for upper in [wilson(t.agreed, t.sampled)[1]]
        if upper < bar
    ]
    return min(below)[1] if below else None


def guarded(
    allowed: tuple[int, ...] | None, names: list[str], held: Collection[str]
) -> tuple[tuple[int, ...] | None, tuple[str, ...]]:
    """(the tiers a routed request may use with `held` held back, config tier indices, None:
    all; the names of the tiers that took out). A hold never leaves a request without a tier:
    a tenant capped to held tiers only keeps its cap."""
    if not held:  # nearly every request: nothing to take out
        return allowed, ()
    base = allowed if allowed is not None else tuple(range(len(names)))
    kept = tuple(i for i in base if names[i] not in held)
    if not kept or len(kept) == len(base):
        return allowed, ()
    return kept, tuple(names[i] for i in base if i not in kept)

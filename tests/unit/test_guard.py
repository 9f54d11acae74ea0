"""The shadow guard's decision: hold a tier back only when the checks show, beyond their 95%
interval, that routing keeps less than the goal, and then the tier that agrees least."""

from __future__ import annotations

import pytest

from rung.cache.fit import wilson
from rung.classifiers import cascade
from rung.classifiers.model import load, resolve
from rung.config import GoalConfig
from rung.router.cascading import Policies
from rung.router.guard import guarded, keeps_upper, next_hold
from rung.router.shadow import Tally


def tallies(**tiers: tuple[int, int, int]) -> dict[str, Tally]:
    return {name: Tally(*counts) for name, counts in tiers.items()}


def test_a_tier_that_mostly_disagrees_is_held_back_once_there_is_evidence() -> None:
    # small served 80 answers, 20 checked, 4 agreed: keeps at most ~0.5 of the reference
    seen = tallies(small=(80, 20, 4), large=(20, 0, 0))
    assert next_hold(seen, "large", keep=0.95, min_checks=20) == "small"
    # the same rate on too few checks is not evidence yet
    few = tallies(small=(80, 19, 4), large=(20, 0, 0))
    assert next_hold(few, "large", keep=0.95, min_checks=20) is None


def test_no_hold_while_the_upper_bound_still_reaches_the_goal() -> None:
    # 19 of 20 agree: the interval reaches well above 0.95
    good = tallies(small=(50, 20, 19), large=(50, 0, 0))
    assert keeps_upper(good, "large", 20) == pytest.approx(0.5 + 0.5 * 0.9911, abs=1e-3)
    assert next_hold(good, "large", keep=0.95, min_checks=20) is None
    # a poor tier that serves little does not break the goal: 2% of traffic at 0.3
    rare = tallies(small=(2, 20, 6), large=(98, 0, 0))
    assert next_hold(rare, "large", keep=0.95, min_checks=20) is None


def test_the_tier_that_agrees_least_goes_first_and_the_reference_never() -> None:
    seen = tallies(small=(40, 30, 6), medium=(40, 30, 15), large=(20, 0, 0))
    assert next_hold(seen, "large", keep=0.95, min_checks=20) == "small"
    # with small held, medium alone still breaks the goal
    assert next_hold(seen, "large", keep=0.95, min_checks=20, held={"small"}) == "medium"
    assert next_hold(seen, "large", keep=0.95, min_checks=20, held={"small", "medium"}) is None
    only_top = tallies(large=(10, 0, 0))
    assert next_hold(only_top, "large", keep=0.99, min_checks=1) is None


def test_an_unchecked_tier_counts_as_keeping_everything() -> None:
    # medium has no checks: the bound assumes the best of it, so the guard waits
    seen = tallies(small=(4, 20, 2), medium=(96, 0, 0), large=(0, 0, 0))
    high = keeps_upper(seen, "large", 20)
    assert high is not None
    assert high > 0.95
    assert next_hold(seen, "large", keep=0.95, min_checks=20) is None
    assert keeps_upper(tallies(), "large", 20) is None


def test_guarded_takes_held_tiers_out_but_never_every_tier() -> None:
    names = ["small", "medium", "large"]
    assert guarded(None, names, {"small"}) == ((1, 2), ("small",))
    assert guarded((0, 1), names, {"small"}) == ((1,), ("small",))
    assert guarded((0,), names, {"small"}) == ((0,), ())  # capped to it alone: the cap stays
    assert guarded(None, names, set()) == (None, ())
    assert guarded((1, 2), names, {"small"}) == ((1, 2), ())  # not among its tiers anyway


def test_the_bar_is_the_agreement_validated_for_the_goal_not_the_goal_itself() -> None:
    # 24 of 40 agree (upper bound ~0.74): below keep 0.95, but agreement is not correctness
    seen = tallies(small=(80, 40, 24), large=(20, 0, 0))
    assert next_hold(seen, "large", keep=0.95, min_checks=20) == "small"
    # on the validation split, where the goal was met, small agreed at least 55% of the time
    assert next_hold(seen, "large", 0.95, 20, expected={"small": 0.55}) is None
    # ... or at least 80%: live traffic reads beyond the interval below that
    assert next_hold(seen, "large", 0.95, 20, expected={"small": 0.80}) == "small"
    # the tier furthest below its own bar goes first
    two = tallies(small=(40, 40, 24), medium=(40, 40, 20), large=(20, 0, 0))
    bars = {"small": 0.9, "medium": 0.5}
    assert next_hold(two, "large", 0.95, 20, expected=bars) == "small"


def test_the_bars_are_what_the_shipped_policy_read_on_its_validation_split() -> None:
    goal = GoalConfig(keep=0.95)
    for name, texts in (("production", True), ("local", False)):
        model = load(resolve(name))
        policies = Policies(model, [float(t["price"]) for t in model.tiers], verifying=True)
        tiers = tuple(range(len(model.tiers)))
        bars = policies.agreement(goal, tiers)
        if not texts:  # labels without answer texts: nothing to compare, the goal is the bar
            assert bars == {}
            continue
        held = policies.held("validation", tiers)
        served, _, _ = cascade.simulate(policies.fitted(goal, tiers).params, held)
        top = tiers[-1]
        assert top not in bars
        assert bars
        for k, bar in bars.items():
            mine = served == k
            agreed = int(held.agree[mine, k, top].sum())
            assert bar == pytest.approx(wilson(agreed, int(mine.sum()))[0])
            assert 0 < bar < agreed / mine.sum()


def test_the_startup_line_says_when_a_tier_is_held_back() -> None:
    from rung.router.runtime import guard_summary

    line = guard_summary({"small": 0.7352, "medium": 0.5173}, 0.95, "large")
    assert "agree with large" in line
    assert "(small 0.74, medium 0.52)" in line
    assert line.endswith("routing keeps below 0.95")
    assert guard_summary({}, 0.9, "large").endswith("agree with large below keep 0.9")

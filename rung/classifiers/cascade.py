"""The cascade policy: route, answer, verify, escalate. Pure functions over plain arrays, used
unchanged by the gateway (one request) and by offline evaluation (many), so what is measured
is what serves.

For a request:

1. **start**: the allowed tier with the best `P(success) - lam * expected_cost / top's`, where
   a tier's expected cost for this prompt is its price x (the prompt's tokens + the tier's mean
   answer tokens): a tier that writes long answers costs more than its price says. A high
   enough lam starts at the cheapest tier; a prompt the cheap tiers are unlikely to answer
   starts higher ("skip the cheap try").
2. **after each answer**: accept it when the answer verifier's P(this answer is right) reaches
   `tau`, or when it agrees with the answer of the tier called before it (two models reaching
   the same final answer independently); otherwise call the next tier of the escalation `path`
   (a subset of the tiers above, e.g. small -> medium -> top, or straight to the top). The top
   tier's answer is always accepted.

`lam`, `tau` and the path are fitted together (`sweep`, then rung.classifiers.goal's `meet`) on
held-out predictions so that the
operator's goal (`keep: 0.95`, `max_cost_share: 0.5`) is met at the least expected cost,
counting every call a request makes. `tau = 0` accepts every first answer: prompt-only routing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
LAMBDAS: tuple[float, ...] = (0.0, *(float(x) for x in np.geomspace(0.005, 20.0, 64)))
TAUS: tuple[float, ...] = (0.0, *(float(x) for x in np.linspace(0.3, 0.98, 18)), 1.01)


@dataclass(frozen=True)
class Params:
    lam: float
    tau: float
    """Accept an answer whose verified P(right) is at least this (0: accept every answer;
    above 1: never, so every request escalates to the top of its path)."""
    path: tuple[int, ...]
    """The tiers escalation may call, ascending; the last is the top. Indices into the tiers
    the parameters were fitted over."""
    agree: bool = True

    def describe(self, names: Sequence[str]) -> str:
        path = "->".join(names[i] for i in self.path)
        return f"lambda={self.lam:.3g} tau={self.tau:.2f} path={path}"


@dataclass(frozen=True)
class Point:
    params: Params
    cost_share: float
    keep: float
    calls: float
    """Calls per prompt."""
    escalated: float
    """Share of prompts that paid two or more calls."""


@dataclass(frozen=True)
class Held:
    """What the policy is fitted and judged on, per prompt and tier (tiers in price order)."""

    probabilities: Array
    """P(success) from the prompt."""
    verified: Array
    """P(this tier's answer is right) from the answer verifier."""
    expected: Array
    """Expected cost of a call (before it is made): what `start` weighs."""
    costs: Array
    """Actual cost of each tier's call."""
    scores: Array
    agree: npt.NDArray[np.bool_]
    """[prompts, tiers, tiers]: whether two tiers' final answers agree."""


def start(probabilities: Sequence[float], expected: Sequence[float], lam: float,
          allowed: Sequence[int]) -> int:  # fmt: skip
    """The tier to try first: best P(success) - lam * expected cost / the dearest allowed
    tier's (the cheaper tier on ties)."""
    top = max(expected[i] for i in allowed)
    ordered = sorted(allowed, key=lambda i: (expected[i], i))
    return max(ordered, key=lambda i: probabilities[i] - lam * expected[i] / (top or 1.0))


def step(params: Params, tier: int, verified: float, agreed: bool) -> int | None:
    """After `tier` answered: None to accept its answer, else the tier to call next."""
    if tier >= params.path[-1] or verified >= params.tau or (params.agree and agreed):
        return None
    return next(t for t in params.path if t > tier)


def starts(lam: float, held: Held) -> Ints:
    """`start` for every prompt at once."""
    tiers = held.scores.shape[1]
    ratio = held.expected / np.maximum(held.expected.max(axis=1, keepdims=True), 1e-30)
    utility = held.probabilities - lam * ratio
    # The cheaper tier on ties: argmax over tiers taken in expected-cost order.
    order = np.argsort(held.expected + 1e-12 * np.arange(tiers), axis=1, kind="stable")
    best = np.argmax(np.take_along_axis(utility, order, 1), 1)
    out: Ints = np.take_along_axis(order, best[:, None], 1)[:, 0]
    return out


def next_tiers(path: tuple[int, ...], tiers: int) -> Ints:
    """For each tier, the next tier of `path` above it (the top for the top)."""
    top = path[-1]
    out: Ints = np.array([next((t for t in path if t > k), top) for k in range(tiers)])
    return out


def simulate(params: Params, held: Held) -> tuple[Ints, Array, Ints]:
    """The policy over every prompt at once: (the tier whose answer is served, the cost of
    all calls made, the number of calls)."""
    n, tiers = held.scores.shape
    rows = np.arange(n)
    tier = starts(params.lam, held)
    top = params.path[-1]
    following = next_tiers(params.path, tiers)
    spent = np.zeros(n)
    calls = np.zeros(n, dtype=np.int64)
    served = np.full(n, -1, dtype=np.int64)
    previous = np.full(n, -1, dtype=np.int64)
    live = np.ones(n, dtype=bool)
    for _ in range(tiers):
        if not live.any():
            break
        idx = rows[live]
        t = tier[idx]
        spent[idx] += held.costs[idx, t]
        calls[idx] += 1
        agreed = (previous[idx] >= 0) & held.agree[idx, t, np.maximum(previous[idx], 0)]
        accept = (t >= top) | (held.verified[idx, t] >= params.tau)
        if params.agree:
            accept |= agreed
        served[idx[accept]] = t[accept]
        live[idx[accept]] = False
        moving = idx[~accept]
        previous[moving] = tier[moving]
        tier[moving] = following[tier[moving]]
    served[served < 0] = top
    return served, spent, calls


def point(params: Params, held: Held) -> Point:
    served, spent, calls = simulate(params, held)
    top = params.path[-1]
    top_cost = float(held.costs[:, top].sum())
    top_score = float(held.scores[:, top].mean())
    score = float(held.scores[np.arange(len(served)), served].mean())
    return Point(
        params,
        float(spent.sum()) / top_cost if top_cost > 0 else 0.0,
        score / top_score if top_score > 0 else 1.0,
        float(calls.mean()),
        float((calls >= 2).mean()),
    )


def paths(tiers: int) -> list[tuple[int, ...]]:
    """Every escalation path over `tiers` tiers (price order): any subset of the middle tiers,
    then the top."""
    middle = range(1, tiers - 1)
    return [
        (*chosen, tiers - 1)
        for size in range(len(middle) + 1)
        for chosen in itertools.combinations(middle, size)
    ]


def sweep(held: Held, verifying: bool = True) -> list[Point]:
    """The policy's points over lam x tau x path (lam alone without a verifier). Every tau of
    one (lam, path) is judged at once: the tiers a prompt would visit are the same for all of
    them; only where it stops differs."""
    n, tiers = held.scores.shape
    taus = np.array(TAUS if verifying else (0.0,))
    rows = np.arange(n)
    out = []
    first = {lam: starts(lam, held) for lam in LAMBDAS}
    for path in paths(tiers) if verifying else [(tiers - 1,)]:
        top = path[-1]
        following = next_tiers(path, tiers)
        top_cost = float(held.costs[:, top].sum()) or 1.0
        top_score = float(held.scores[:, top].mean()) or 1.0
        for lam in LAMBDAS:
            # The trajectory: the tiers visited, each step's bar to accept, cost so far.
            visits = [first[lam]]
            while len(visits) < tiers:
                visits.append(np.where(visits[-1] >= top, visits[-1], following[visits[-1]]))
            tier = np.stack(visits, axis=1)  # [n, steps]
            bar = held.verified[rows[:, None], tier]
            bar[tier >= top] = np.inf
            if verifying:
                earlier = np.concatenate([tier[:, :1], tier[:, :-1]], axis=1)
                agreed = held.agree[rows[:, None], tier, earlier]
                agreed[:, 0] = False
                bar[agreed] = np.inf
            spent = np.cumsum(held.costs[rows[:, None], tier], axis=1)
            stops = np.argmax(bar[:, :, None] >= taus[None, None, :], axis=1)  # [n, taus]
            served = np.take_along_axis(tier, stops, axis=1)
            cost = np.take_along_axis(spent, stops, axis=1).sum(axis=0) / top_cost
            score = held.scores[rows[:, None], served].mean(axis=0) / top_score
            for j, tau in enumerate(taus):
                params = Params(lam, float(tau), path, agree=verifying)
                calls = stops[:, j] + 1
                out.append(
                    Point(
                        params,
                        float(cost[j]),
                        float(score[j]),
                        float(calls.mean()),
                        float((calls >= 2).mean()),
                    )
                )
    return out

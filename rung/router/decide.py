"""Choosing a tier before any model runs.

`ClassifierChooser` (the default) embeds the routing text once, asks the difficulty model for
P(each tier answers well) and applies the pure utility rule (rung.classifiers.decision) with
the lambda that meets the request's goal on the classifier's validation split, for the tiers and
prices this config serves. `LengthChooser` is a plain rule on prompt length. Both implement
`TierChooser`; see docs/routing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.decision import choose_tier, choose_tier_by_threshold, prefer_spare
from rung.classifiers.goal import Point, at_lambda, curve, describe, eased, interval, keeps, meet
from rung.classifiers.model import DifficultyModel
from rung.config import DEFAULT_GOAL, GoalConfig, TierConfig
from rung.errors import ConfigError

LAMBDA_MEMO = 4096
"""(goal, allowed tiers) pairs whose lambda is kept; goals are few, so this never fills in
practice (it is cleared when it does)."""


@dataclass(frozen=True)
class Query:
    text: str
    """The routing text: the last user message (or the prompt)."""
    prompt_chars: int
    """Characters in the whole prompt (all messages)."""
    vector: np.ndarray | None = None
    """The routing text's embedding when the pipeline already computed it (never embed twice)."""
    goal: GoalConfig | None = None
    """The tenant's goal (None with `target` None too: the config's)."""
    target: float | None = None
    """The tenant's legacy quality target, instead of a goal."""
    allowed: tuple[int, ...] | None = None
    """Config tier indices the tenant may use (None: all)."""
    eased: float = 0.0
    """Budget downshift: how far the goal is relaxed toward the cheapest setting (0..1)."""


@dataclass(frozen=True)
class Decision:
    tier: int
    reason: str
    embedding: np.ndarray | None = None
    """The routing text's embedding when the chooser computed one (reused downstream)."""


class TierChooser(Protocol):
    @property
    def fingerprint(self) -> str:
        """Names the routing setup (policy, classifier, target, tiers): a cached answer made
        under the same fingerprint was routed exactly as this request would be."""
        ...

    async def choose(self, query: Query) -> Decision: ...


def decide_by_length(prompt_chars: int, thresholds: Sequence[int], n_tiers: int) -> Decision:
    for tier, limit in enumerate(thresholds[: n_tiers - 1]):
        if prompt_chars <= limit:
            return Decision(tier, f"length {prompt_chars}<={limit}")
    top = min(len(thresholds), n_tiers - 1)
    bound = f">{thresholds[top - 1]}" if top > 0 else "(single tier)"
    return Decision(top, f"length {prompt_chars}{bound}")


@dataclass(frozen=True)
class LengthChooser:
    thresholds: tuple[int, ...]
    n_tiers: int
    tier_names: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return f"length:{','.join(map(str, self.thresholds))}/tiers={','.join(self.tier_names)}"

    async def choose(self, query: Query) -> Decision:
        decision = decide_by_length(query.prompt_chars, self.thresholds, self.n_tiers)
        return within(decision, query.allowed)


def within(decision: Decision, allowed: tuple[int, ...] | None) -> Decision:
    """The largest allowed tier not above the decision (else the smallest allowed one)."""
    if allowed is None or decision.tier in allowed:
        return decision
    below = [t for t in allowed if t <= decision.tier]
    tier = max(below) if below else min(allowed)
    return Decision(tier, f"{decision.reason}; capped by tenant policy", decision.embedding)


def fallback_order(decided: int, n_tiers: int) -> tuple[int, ...]:
    """The decided tier, then every larger tier in order: a down tier is covered by a bigger one."""
    return tuple(range(decided, n_tiers))


class ClassifierChooser:
    def __init__(
        self,
        model: DifficultyModel,
        batcher: MicroBatcher,
        tiers: Sequence[TierConfig],
        goal: GoalConfig | None,
        target: float | None = None,
    ) -> None:
        names = [t.name for t in tiers]
        # Classifier tier k -> config tier index (None: not served by this config).
        self.index = [names.index(n) if n in names else None for n in model.tier_names]
        self.allowed = [k for k, i in enumerate(self.index) if i is not None]
        if not self.allowed:
            raise ConfigError(
                "routing.classifier",
                [
                    f"the classifier's tiers {model.tier_names} share no name with the config's "
                    f"tiers {names}"
                ],
            )
        if target is None and "validation" not in model.held:
            raise ConfigError(
                "routing.goal",
                [
                    "this classifier has no validation split to meet a goal on (made before "
                    "rung 0.2?): retrain it with `rung train`, or set routing.quality_target"
                ],
            )
        self.prices = [
            (tiers[i].price.input_per_mtok + tiers[i].price.output_per_mtok) / 2
            if i is not None
            else float(model.tiers[k]["price"])
            for k, i in enumerate(self.index)
        ]
        self.model = model
        self.batcher = batcher
        self.goal = goal
        self.target = target
        self._lambdas: dict[tuple[GoalConfig, tuple[int, ...]], float] = {}
        self.load: Callable[[int], float] | None = None
        """Config tier index -> share of its capacity in use (set by the runtime; None: the
        choice ignores load)."""
        self._curves: dict[tuple[int, ...], list[Point]] = {}
        shown = describe(goal or DEFAULT_GOAL)
        rule = f"target={target:g}" if target is not None else f"goal={shown}"
        self.fingerprint = f"classifier:{model.fingerprint}/{rule}/tiers={','.join(names)}"

    def lam_for(self, goal: GoalConfig, allowed: Sequence[int], progress: float = 0.0) -> float:
        """The lambda that meets `goal` on the validation split, over these classifier tiers at
        this config's prices (relaxed by budget downshift `progress`)."""
        tiers = tuple(sorted(allowed))
        if progress > 0:
            floor = self._points(tiers)[-1].keep  # the largest lambda: the cheapest tier
            goal = eased(goal, round(progress, 2), floor)
        key = (goal, tiers)
        lam = self._lambdas.get(key)
        if lam is None:
            if len(self._lambdas) >= LAMBDA_MEMO:
                self._lambdas.clear()
            lam = self._lambdas[key] = meet(goal, self._points(tiers)).lam
        return lam

    def held_out(self, goal: GoalConfig) -> str:
        """What `goal` keeps and costs on the classifier's test split, for the served tiers at
        this config's prices (for the startup log: an operator sees what the goal buys)."""
        test = self.model.held.get("test")
        if test is None:
            return "no held-out split to report on"
        tiers = sorted(self.allowed)
        lam = self.lam_for(goal, tiers)
        part = test.columns(tiers)
        prices = np.array([self.prices[k] for k in tiers], dtype=np.float64)
        costs = part.costs(prices)
        point = at_lambda(lam, part.probabilities, part.scores, costs, prices)
        spread = interval(lam, part.probabilities, part.scores, costs, prices)
        top = self.model.tier_names[tiers[int(np.argmax(prices))]]
        (k0, k1), (c0, c1) = spread["keep"], spread["cost_share"]
        return (
            f"lambda {lam:.3g}; on {len(part.scores)} held-out prompts it {keeps(point.keep, top)} "
            f"(95% interval {k0:.0%}-{k1:.0%}) at {point.cost_share:.1%} of its cost "
            f"({c0:.0%}-{c1:.0%})"
        )

    def _points(self, tiers: tuple[int, ...]) -> list[Point]:
        points = self._curves.get(tiers)
        if points is None:  # at most one per subset of tiers a tenant may use
            validation = self.model.held["validation"].columns(list(tiers))
            prices = np.array([self.prices[k] for k in tiers], dtype=np.float64)
            points = self._curves[tiers] = curve(
                validation.probabilities, validation.scores, validation.costs(prices), prices
            )
        return points

    async def choose(self, query: Query) -> Decision:
        vector = query.vector if query.vector is not None else await self.batcher.embed(query.text)
        probabilities: list[float] = self.model.predict(vector[None, :], [query.text])[0].tolist()
        allowed = self.allowed
        if query.allowed is not None:
            allowed = [k for k in self.allowed if self.index[k] in query.allowed]
            if not allowed:  # the tenant may use none of the classifier's tiers
                tier = min(query.allowed)
                return Decision(tier, "tenant policy: no classified tier allowed", vector)
        shown = " ".join(f"{self.model.tier_names[j]}={probabilities[j]:.2f}" for j in allowed)
        target = query.target if query.goal is None else None
        if query.goal is None and query.target is None:
            target = self.target
        if target is not None:
            k, why = choose_tier_by_threshold(probabilities, self.prices, target, allowed)
            rule = f"target={target:g}"
        else:
            goal = query.goal or self.goal or DEFAULT_GOAL
            lam = self.lam_for(goal, allowed, query.eased)
            k, why = choose_tier(probabilities, self.prices, lam, allowed)
            rule = f"goal={describe(goal)} lambda={lam:.3g}"
            if self.load is not None:
                load = [1.0 if i is None else self.load(i) for i in self.index]
                spare = prefer_spare(probabilities, self.prices, lam, k, allowed, load)
                if spare != k:
                    why += (f"; {self.model.tier_names[k]} busy ({load[k]:.0%}), as good and "
                            f"spare: {self.model.tier_names[spare]}")  # fmt: skip
                    k = spare
        chosen = self.index[k]
        assert chosen is not None
        return Decision(chosen, f"classifier {shown} {rule} {why}", vector)

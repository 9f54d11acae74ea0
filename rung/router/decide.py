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

from rung.classifiers import cascade
from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.cascade import start
from rung.classifiers.cascade_report import bootstrap
from rung.classifiers.decision import choose_tier_by_threshold, prefer_spare
from rung.classifiers.goal import describe, keeps
from rung.classifiers.model import DifficultyModel
from rung.config import DEFAULT_GOAL, EscalationConfig, GoalConfig, TierConfig
from rung.errors import ConfigError
from rung.router.cascading import Judging, Policies


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
    judging: Judging | None = None
    """How the answers will be judged (None: the first answer is served)."""


class TierChooser(Protocol):
    @property
    def judges(self) -> bool:
        """Its decisions say how answers are judged (else the pipeline judges by the
        calibrator when escalation is on)."""
        ...

    @property
    def fingerprint(self) -> str:
        """Names the routing setup (policy, classifier, target, tiers): a cached answer made
        under the same fingerprint was routed exactly as this request would be."""
        ...

    async def choose(self, query: Query) -> Decision: ...

    def agreement(
        self, goal: GoalConfig | None, allowed: tuple[int, ...] | None
    ) -> dict[str, float]:
        """Tier name -> the share of its routed answers that should at least agree with the
        top tier's while traffic is like what the goal was met on (the lower bound of what the
        validation split read; empty: unknown); the shadow guard compares its checks with it."""
        ...


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
    judges: bool = False

    @property
    def fingerprint(self) -> str:
        return f"length:{','.join(map(str, self.thresholds))}/tiers={','.join(self.tier_names)}"

    async def choose(self, query: Query) -> Decision:
        decision = decide_by_length(query.prompt_chars, self.thresholds, self.n_tiers)
        return within(decision, query.allowed)

    def agreement(
        self, goal: GoalConfig | None, allowed: tuple[int, ...] | None
    ) -> dict[str, float]:
        return {}


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
    """P(each tier succeeds) from the prompt, then the cascade policy fitted to the request's
    goal (rung.router.cascading): the tier to start at, and how its answer will be judged."""

    def __init__(
        self,
        model: DifficultyModel,
        batcher: MicroBatcher,
        tiers: Sequence[TierConfig],
        goal: GoalConfig | None,
        target: float | None = None,
        escalation: EscalationConfig | None = None,
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
        on = escalation is not None and escalation.enabled
        threshold = escalation.threshold if escalation is not None and on else None
        self.policies = Policies(model, self.prices, verifying=on, threshold=threshold)
        self.judges = self.policies.judges
        self.load: Callable[[int], float] | None = None
        """Config tier index -> share of its capacity in use (set by the runtime; None: the
        choice ignores load)."""
        shown = describe(goal or DEFAULT_GOAL)
        rule = f"target={target:g}" if target is not None else f"goal={shown}"
        judged = "verified" if self.policies.verifying else "calibrated" if on else "first"
        self.fingerprint = (
            f"classifier:{model.fingerprint}/{rule}/answers={judged}/tiers={','.join(names)}"
        )

    def held_out(self, goal: GoalConfig) -> str:
        """What `goal` keeps and costs on the classifier's test split, for the served tiers at
        this config's prices (for the startup log: an operator sees what the goal buys)."""
        if "test" not in self.model.held:
            return "no held-out split to report on"
        tiers = self.policies.order(self.allowed)
        point = self.policies.fitted(goal, tiers)
        test = self.policies.held("test", tiers)
        realised = cascade.point(point.params, test)
        spread = bootstrap(point.params, test)
        (k0, k1), (c0, c1) = spread["keep_95"], spread["cost_share_95"]
        top = self.model.tier_names[tiers[-1]]
        names = [self.model.tier_names[k] for k in tiers]
        return (
            f"{point.params.describe(names)}; on {len(test.scores)} held-out prompts it "
            f"{keeps(realised.keep, top)} (95% interval {k0:.0%}-{k1:.0%}) at "
            f"{realised.cost_share:.1%} of its cost ({c0:.0%}-{c1:.0%}), "
            f"{realised.calls:.2f} calls a request"
        )

    def agreement(
        self, goal: GoalConfig | None, allowed: tuple[int, ...] | None
    ) -> dict[str, float]:
        tiers = [k for k in self.allowed if allowed is None or self.index[k] in allowed]
        if not tiers:
            return {}
        found = self.policies.agreement(
            goal or self.goal or DEFAULT_GOAL, self.policies.order(tiers)
        )
        return {self.model.tier_names[k]: rate for k, rate in found.items()}

    async def choose(self, query: Query) -> Decision:
        vector = query.vector if query.vector is not None else await self.batcher.embed(query.text)
        probabilities: list[float] = self.model.predict(vector[None, :], [query.text])[0].tolist()
        allowed = self.allowed
        if query.allowed is not None:
            allowed = [k for k in self.allowed if self.index[k] in query.allowed]
            if not allowed:  # the tenant may use none of the classifier's tiers
                tier = min(query.allowed)
                return Decision(tier, "tenant policy: no classified tier allowed", vector)
        names = self.model.tier_names
        shown = " ".join(f"{names[j]}={probabilities[j]:.2f}" for j in allowed)
        target = query.target if query.goal is None else None
        if query.goal is None and query.target is None:
            target = self.target
        if target is not None:
            k, why = choose_tier_by_threshold(probabilities, self.prices, target, allowed)
            chosen = self.index[k]
            assert chosen is not None
            return Decision(chosen, f"classifier {shown} target={target:g} {why}", vector)
        goal = query.goal or self.goal or DEFAULT_GOAL
        tiers = self.policies.order(allowed)
        point = self.policies.fitted(goal, tiers, query.eased)
        params = point.params
        expected = self.policies.expected(tiers, query.prompt_chars)
        local = [probabilities[k] for k in tiers]
        k = tiers[start(local, expected, params.lam, range(len(tiers)))]
        why = f"start={names[k]}"
        if self.load is not None:
            served = [self.index[j] for j in tiers]
            load = [1.0 if i is None else self.load(i) for i in served]
            at = tiers.index(k)
            spare = prefer_spare(local, expected, params.lam, at, range(len(tiers)), load)
            if spare != at:
                why += (f"; {names[k]} busy ({load[at]:.0%}), as good and spare: "
                        f"{names[tiers[spare]]}")  # fmt: skip
                k = tiers[spare]
        chosen = self.index[k]
        assert chosen is not None
        config_tiers = tuple(i for i in (self.index[j] for j in tiers) if i is not None)
        judging = self.policies.judging(point, tiers, config_tiers, probabilities, query.text)
        policy = params.describe([names[j] for j in tiers])
        reason = f"classifier {shown} goal={describe(goal)} {policy} {why}"
        return Decision(chosen, reason, vector, judging)

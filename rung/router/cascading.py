"""The cascade policy (rung.classifiers.cascade) at the gateway: its parameters fitted for each
goal and set of tiers a request may bring (from the classifier's validation predictions, at this
config's prices), and the judging of one request's answers.

With `escalation.enabled` and a classifier trained on answer texts, answers are judged by its
answer verifier and the whole policy (start, accept threshold, escalation path) is fitted to
the goal. With escalation on but no answer verifier (a classifier trained without texts), an
answer is judged by the confidence calibrator alone against `escalation.threshold`, escalating
to the next tier up, as before. With escalation off, every first answer is accepted: the start
rule alone, fitted to the goal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rung.cache.fit import wilson
from rung.classifiers import cascade
from rung.classifiers.answers import read
from rung.classifiers.cascade_report import policy_held
from rung.classifiers.goal import eased, meet
from rung.classifiers.model import DifficultyModel
from rung.classifiers.verifier import AnswerVerifier, inputs
from rung.config import GoalConfig

MEMO = 4096
"""Fitted (goal, tiers) pairs kept; cleared when full (goals and tier sets are few)."""


@dataclass(frozen=True)
class Verdict:
    verified: float
    """P(the answer is right) as judged."""
    next: int | None
    """The config tier to call next (None: the answer is accepted)."""
    result: str | None
    """The answer's final result (compared with the next tier's)."""
    agreed: bool


@dataclass(frozen=True)
class Judging:
    """How one routed request's answers are judged: the fitted policy over its tiers."""

    params: cascade.Params
    tiers: tuple[int, ...]
    """Config tier index of each of the policy's tiers (price order)."""
    probabilities: tuple[float, ...]
    """The prompt model's P(success) per policy tier."""
    verifier: AnswerVerifier | None
    """Over the policy's tiers; None: judge by the calibrator's confidence alone."""
    prompt: str

    def judge(
        self,
        tier: int,
        text: str,
        finish: str | None,
        confidence: float | None,
        previous: str | None,
    ) -> Verdict:
        """After config tier `tier` answered `text` (`confidence`: the calibrator's, from its
        logprobs; `previous`: the final result of the tier called before it)."""
        reading = read(text, self.prompt, finish)
        agreed = previous is not None and reading.result == previous
        if tier not in self.tiers:  # a fallback outside the policy's tiers: keep it
            return Verdict(1.0, None, reading.result, agreed)
        k = self.tiers.index(tier)
        if self.verifier is not None:
            row = inputs(reading.features, self.probabilities[k], confidence)
            verified = self.verifier.probability(k, row)
        else:
            verified = 1.0 if confidence is None else confidence
        step = cascade.step(self.params, k, verified, agreed)
        return Verdict(verified, None if step is None else self.tiers[step], reading.result, agreed)


def one_up(threshold: float, tiers: int, lam: float = 0.0) -> cascade.Params:
    """Judging by the calibrator's confidence against `threshold`, one tier up at a time (the
    escalation rule before answer verifiers), over `tiers` tiers."""
    return cascade.Params(lam, threshold, tuple(range(1, tiers)) or (0,), False)


def legacy(threshold: float, order: tuple[int, ...], prompt: str) -> Judging:
    """Judging by the calibrator's confidence alone: for a routing policy without a
    classifier (`length`)."""
    return Judging(one_up(threshold, len(order)), order, tuple(1.0 for _ in order), None, prompt)


class Policies:
    """The fitted parameters for each (goal, tiers) of one classifier at one config's prices."""

    def __init__(
        self,
        model: DifficultyModel,
        prices: Sequence[float],
        verifying: bool,
        threshold: float | None = None,
    ) -> None:
        """`prices`: per classifier tier. `verifying`: escalation is on and the classifier has
        an answer verifier. `threshold`: escalation is on without one (the calibrator's
        threshold)."""
        self.model = model
        self.prices = list(prices)
        self.verifying = verifying and model.verifier is not None
        self.threshold = None if self.verifying else threshold
        self.judges = self.verifying or threshold is not None
        """Whether answers are judged at all (escalation is on)."""
        self._sweeps: dict[tuple[int, ...], list[cascade.Point]] = {}
        self._floors: dict[tuple[int, ...], float] = {}
        """Per set of tiers: the keep of the cheapest point (what budget downshift eases to)."""
        self._fitted: dict[tuple[GoalConfig, tuple[int, ...]], cascade.Point] = {}
        self._agreement: dict[tuple[GoalConfig, tuple[int, ...]], dict[int, float]] = {}

    def order(self, tiers: Sequence[int]) -> tuple[int, ...]:
        """Classifier tiers in price order (the policy's order)."""
        return tuple(sorted(tiers, key=lambda k: (self.prices[k], k)))

    def held(self, split: str, tiers: tuple[int, ...]) -> cascade.Held:
        part = self.model.held[split].columns(list(tiers))
        prices = np.array([self.prices[k] for k in tiers], dtype=np.float64)
        chars = [self.model.answer_chars[k] for k in tiers]
        return policy_held(part, prices, chars)

    def points(self, tiers: tuple[int, ...]) -> list[cascade.Point]:
        points = self._sweeps.get(tiers)
        if points is None:  # at most one sweep per set of tiers a tenant may use
            points = self._sweeps[tiers] = cascade.sweep(
                self.held("validation", tiers), self.verifying
            )
        return points

    def fitted(
        self, goal: GoalConfig, tiers: tuple[int, ...], progress: float = 0.0
    ) -> cascade.Point:
        """The policy that meets `goal` over these tiers (relaxed by budget downshift
        `progress`, 0..1)."""
        if progress > 0:
            floor = self._floors.get(tiers)
            if floor is None:  # once per set of tiers, not per downshifted request
                cheapest = min(self.points(tiers), key=lambda p: p.cost_share)
                floor = self._floors[tiers] = cheapest.keep
            goal = eased(goal, round(progress, 2), floor)
        key = (goal, tiers)
        point = self._fitted.get(key)
        if point is None:
            if len(self._fitted) >= MEMO:
                self._fitted.clear()
            point = meet(goal, self.points(tiers))
            if self.threshold is not None:  # the calibrator's threshold, one step up at a time
                params = one_up(self.threshold, len(tiers), point.params.lam)
                point = replace(point, params=params)
            self._fitted[key] = point
        return point

    def judging(
        self,
        point: cascade.Point,
        tiers: tuple[int, ...],
        config_tiers: tuple[int, ...],
        probabilities: Sequence[float],
        prompt: str,
    ) -> Judging | None:
        """The judging of one request (None when escalation is off or one tier is left)."""
        if not self.judges or len(tiers) < 2:
            return None
        model = self.model.verifier
        verifier = model.columns(list(tiers)) if self.verifying and model is not None else None
        return Judging(
            point.params,
            config_tiers,
            tuple(float(probabilities[k]) for k in tiers),
            verifier,
            prompt,
        )

    def agreement(self, goal: GoalConfig, tiers: tuple[int, ...]) -> dict[int, float]:
        """Classifier tier -> the lower 95% bound of the share of its served answers that agree
        with the top tier's on the validation split, under the policy fitted to `goal` over
        `tiers`: what shadow checks should at least read while traffic is like the validation
        prompts (rung.router.guard; a tier served there a few times gets a low bar, not a
        noisy one). Empty without answer texts (nothing to compare)."""
        if self.model.held["validation"].keys is None:
            return {}
        key = (goal, tiers)
        known = self._agreement.get(key)
        if known is None:
            held = self.held("validation", tiers)
            served, _, _ = cascade.simulate(self.fitted(goal, tiers).params, held)
            agreed = held.agree[np.arange(len(served)), served, len(tiers) - 1]
            known = {
                tiers[j]: wilson(int(agreed[mine].sum()), int(mine.sum()))[0]
                for j in range(len(tiers) - 1)
                if (mine := served == j).any()
            }
            self._agreement[key] = known
        return known

    def expected(self, tiers: tuple[int, ...], prompt_chars: int) -> list[float]:
        """Each tier's expected cost for a prompt this long: price x (prompt + its mean
        answer), in characters (the ratio between tiers is what counts)."""
        chars = self.model.answer_chars
        return [self.prices[k] * (prompt_chars + chars[k]) for k in tiers]

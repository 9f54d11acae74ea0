"""Choosing a tier before any model runs.

`ClassifierChooser` (the default) embeds the routing text once (micro-batched), asks the
difficulty model for P(each tier answers well) and applies the pure decision rule
(rung.classifiers.decision.choose_tier). `LengthChooser` is a plain rule on prompt length.
Both implement `TierChooser`; see docs/routing.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rung.classifiers.batcher import MicroBatcher
from rung.classifiers.decision import choose_tier
from rung.classifiers.model import DifficultyModel
from rung.config import TierConfig
from rung.errors import ConfigError


@dataclass(frozen=True)
class Query:
    text: str
    """The routing text: the last user message (or the prompt)."""
    prompt_chars: int
    """Characters in the whole prompt (all messages)."""
    vector: np.ndarray | None = None
    """The routing text's embedding when the pipeline already computed it (never embed twice)."""
    target: float | None = None
    """The tenant's quality target (None: the config's)."""
    allowed: tuple[int, ...] | None = None
    """Config tier indices the tenant may use (None: all)."""


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
        target: float,
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
        self.prices = [
            (tiers[i].price.input_per_mtok + tiers[i].price.output_per_mtok) / 2
            if i is not None
            else float(model.tiers[k]["price"])
            for k, i in enumerate(self.index)
        ]
        self.model = model
        self.batcher = batcher
        self.target = target
        self.fingerprint = (
            f"classifier:{model.fingerprint}/target={target:g}/tiers={','.join(names)}"
        )

    async def choose(self, query: Query) -> Decision:
        vector = query.vector if query.vector is not None else await self.batcher.embed(query.text)
        probabilities = self.model.predict(vector[None, :], [query.text])[0]
        target = self.target if query.target is None else query.target
        allowed = self.allowed
        if query.allowed is not None:
            allowed = [k for k in self.allowed if self.index[k] in query.allowed]
            if not allowed:  # the tenant may use none of the classifier's tiers
                tier = min(query.allowed)
                return Decision(tier, "tenant policy: no classified tier allowed", vector)
        k, why = choose_tier(list(probabilities), self.prices, target, allowed)
        chosen = self.index[k]
        assert chosen is not None
        shown = " ".join(f"{self.model.tier_names[j]}={probabilities[j]:.2f}" for j in allowed)
        reason = f"classifier {shown} target={target:g} {why}"
        return Decision(chosen, reason, vector)

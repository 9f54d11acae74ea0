"""Choosing a tier before any model runs. Pure functions; the chooser objects only hold config.

Until the difficulty classifier lands, the default chooser is a documented length rule
(docs/routing.md): prompts up to `length_thresholds[i]` characters go to tier i, longer ones to
the next tier up. The classifier will implement the same `TierChooser` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Query:
    text: str
    """The routing text: the last user message (or the prompt)."""
    prompt_chars: int
    """Characters in the whole prompt (all messages)."""


@dataclass(frozen=True)
class Decision:
    tier: int
    reason: str


class TierChooser(Protocol):
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

    async def choose(self, query: Query) -> Decision:
        return decide_by_length(query.prompt_chars, self.thresholds, self.n_tiers)


def fallback_order(decided: int, n_tiers: int) -> tuple[int, ...]:
    """The decided tier, then every larger tier in order: a down tier is covered by a bigger one."""
    return tuple(range(decided, n_tiers))

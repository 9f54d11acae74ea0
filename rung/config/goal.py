"""The routing goal: what an operator asks routing to achieve."""

from __future__ import annotations

from pydantic import Field, model_validator

from rung.config.base import Frozen


class GoalConfig(Frozen):
    """What routing should achieve, in terms an operator can check (exactly one key):

    - `keep`: the share of the top served tier's quality to keep (0.95: lose at most 5% of its
      score), at the least cost;
    - `max_cost_share`: the most quality for at most this share of the top tier's cost.

    Met on the classifier's validation split; `rung train` reports what it costs and keeps on
    the held-out test split."""

    keep: float | None = Field(default=None, gt=0, le=1)
    max_cost_share: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one(self) -> GoalConfig:
        if (self.keep is None) == (self.max_cost_share is None):
            raise ValueError("set exactly one of `keep` or `max_cost_share`")
        return self


DEFAULT_GOAL = GoalConfig(keep=0.95)

"""Per-tenant policy, resolved once per config into plain values, and the downshift rule.
Pure functions only."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TypeGuard

from rung.config import DEFAULT_GOAL, GoalConfig, Policy, RungConfig

DEFAULT_DOWNSHIFT_FROM = 0.8
MICRO = 1_000_000
"""Money is counted in integer micro-USD: exact sums, atomic Redis increments."""


@dataclass(frozen=True)
class TenantPolicy:
    tenant: str
    allowed: tuple[int, ...]
    """Tier indices this tenant may use, smallest first."""
    goal: GoalConfig | None
    """What routing should achieve for this tenant (None when the legacy threshold is set)."""
    quality_target: float | None
    """The legacy threshold rule's target (None when a goal is set)."""
    escalation_threshold: float | None
    cache: bool
    cache_group: str | None
    max_tokens: int
    daily_budget: int | None
    """micro-USD"""
    monthly_budget: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    on_budget: str
    downshift_from: float
    eased: float = 0.0
    """How far budget downshift has relaxed the goal (0: not at all, 1: the cheapest)."""
    shadow: bool = True
    """Shadow checks may sample this tenant's prompts."""
    adapters: tuple[tuple[int, str], ...] = ()
    """(tier index, adapter name): the LoRA adapter this tenant uses on that tier."""

    def adapter(self, tier: int) -> str | None:
        return next((name for index, name in self.adapters if index == tier), None)

    @property
    def metered(self) -> bool:
        return self.daily_budget is not None or self.monthly_budget is not None


def _merge(base: Policy, override: Policy) -> Policy:
    return base.model_copy(update=override.model_dump(exclude_none=True))


def routing_rule(config: RungConfig, policy: Policy) -> tuple[GoalConfig | None, float | None]:
    """(goal, legacy target): the most specific level that sets either one wins (the tenant,
    then `defaults`, then `routing`); with none set, keep 95% of the top tier's quality."""
    for level in (policy, config.defaults, config.routing):
        if level.goal is not None:
            return level.goal, None
        if level.quality_target is not None:
            return None, level.quality_target
    return DEFAULT_GOAL, None


def resolve(config: RungConfig, tenant: str, policy: Policy) -> TenantPolicy:
    merged = _merge(config.defaults, policy)
    goal, target = routing_rule(config, policy)
    names = [t.name for t in config.tiers]
    top = names.index(merged.max_tier) if merged.max_tier else len(names) - 1
    allowed = tuple(
        i
        for i, name in enumerate(names)
        if i <= top and (merged.allowed_tiers is None or name in merged.allowed_tiers)
    )
    return TenantPolicy(
        tenant=tenant,
        allowed=allowed or (0,),
        goal=goal,
        quality_target=target,
        escalation_threshold=merged.escalation_threshold,
        cache=merged.cache if merged.cache is not None else True,
        cache_group=merged.cache_group,
        max_tokens=merged.max_tokens or config.limits.default_max_tokens,
        daily_budget=_micro(merged.daily_budget_usd),
        monthly_budget=_micro(merged.monthly_budget_usd),
        requests_per_minute=merged.requests_per_minute,
        tokens_per_minute=merged.tokens_per_minute,
        on_budget=merged.on_budget or "downshift",
        downshift_from=merged.downshift_from or DEFAULT_DOWNSHIFT_FROM,
        shadow=merged.shadow is not False,
        adapters=tuple((names.index(t), a) for t, a in sorted((merged.adapters or {}).items())),
    )


def resolve_all(config: RungConfig) -> dict[str, TenantPolicy]:
    return {t.name: resolve(config, t.name, t.policy) for t in config.tenants}


def _micro(usd: float | None) -> int | None:
    return None if usd is None else round(usd * MICRO)


def budget_share(policy: TenantPolicy, day_used: int, month_used: int) -> float:
    """The largest share of a budget already spent or reserved (0 when unmetered)."""
    shares = [0.0]
    if policy.daily_budget is not None:
        shares.append(day_used / policy.daily_budget if policy.daily_budget else math.inf)
    if policy.monthly_budget is not None:
        shares.append(month_used / policy.monthly_budget if policy.monthly_budget else math.inf)
    return max(shares)


def downshift(policy: TenantPolicy, share: float) -> tuple[TenantPolicy, float]:
    """The policy to route this request with, given the budget share used, and how far into
    the downshift band it is (0: not at all, 1: at the budget).

    From `downshift_from` of the budget to all of it, the goal eases linearly to the cheapest
    setting (the legacy quality target falls linearly to 0) and the highest allowed tier steps
    down to the smallest: spend slows as the budget nears.
    """
    if policy.on_budget != "downshift" or share < policy.downshift_from:
        return policy, 0.0
    progress = min(1.0, (share - policy.downshift_from) / (1 - policy.downshift_from))
    keep = max(1, math.ceil(len(policy.allowed) * (1 - progress)))
    shifted = replace(
        policy,
        allowed=policy.allowed[:keep],
        quality_target=(
            None
            if policy.quality_target is None
            else round(policy.quality_target * (1 - progress), 4)
        ),
        eased=progress,
    )
    return shifted, progress


def request_cost(
    prompt_tokens: int, completion_tokens: int, input_per_mtok: float, output_per_mtok: float
) -> int:
    """micro-USD for a call: USD per million tokens x tokens = micro-USD, rounded up."""
    return math.ceil(prompt_tokens * input_per_mtok + completion_tokens * output_per_mtok)


def prompt_token_bound(prompt_bytes: int, messages: int) -> int:
    """An upper bound of the prompt's tokens: a BPE token spans at least one byte, plus a few
    template tokens per message. Reservations use it so a request never costs more than its
    reservation."""
    return prompt_bytes + 8 * messages + 16


def checked_usage(
    prompt: object, completion: object, prompt_bound: int, completion_bound: int
) -> tuple[int, int] | None:
    """A backend's reported (prompt, completion) tokens when they are believable: whole numbers,
    not negative, and within what the request could use (its prompt bound, max_tokens for every
    choice). Anything else (missing, negative, a float, 10^12) is unknown: None. Unknown usage
    is charged the reservation, never credited and never believed for the savings figures."""
    if not (_count(prompt) and _count(completion)):
        return None
    if prompt > prompt_bound or completion > completion_bound:
        return None
    return prompt, completion


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def estimated_tokens(chars: int, pieces: int) -> int:
    """Completion tokens of a streamed answer whose backend sent no usage: the larger of the
    pieces relayed (a streamed chunk carries at least one token) and one token per 4
    characters (English text averages about 4 characters a token; code and other scripts
    fewer, so this errs low for them). Stated in docs/tenants.md."""
    return max(pieces, -(-chars // 4))

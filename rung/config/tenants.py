"""Tenants in the admin config: API keys, per-tenant policy over top-level defaults, and the
stores that keep spend and rate-limit counters."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from rung.config.base import Frozen, check_redis_url
from rung.config.goal import GoalConfig

_HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Policy(Frozen):
    """Per-tenant policy. At the top level (`defaults:`) every unset key takes rung's default;
    in a tenant, every unset key takes the top level's value."""

    max_tier: str | None = None
    """The highest tier routed to or pinned (by name); None: the top of the ladder."""
    allowed_tiers: list[str] | None = None
    """Only these tiers (by name); None: every tier up to `max_tier`."""
    goal: GoalConfig | None = None
    """Overrides routing.goal for this tenant (e.g. `{keep: 0.99}`)."""
    quality_target: float | None = Field(default=None, ge=0, le=1)
    """Legacy per-tenant threshold rule instead of `goal` (see routing.quality_target)."""
    escalation_threshold: float | None = Field(default=None, ge=0, le=1)
    """Lowest answer confidence kept before escalating (the escalation feature)."""
    cache: bool | None = None
    """Use the cache (cache.enabled must be true too)."""
    cache_group: str | None = None
    """Tenants with the same group share cache entries; otherwise none do."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Cap on max_tokens; requests without one get this. Bounds what a request can cost."""
    daily_budget_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    on_budget: Literal["downshift", "reject"] | None = None
    """`downshift`: from `downshift_from` of a budget on, lower the quality target and the
    highest tier step by step, so spend slows down, then refuse at the budget. `reject`: only
    refuse at the budget."""
    downshift_from: float | None = Field(default=None, gt=0, lt=1)
    """Share of a budget from which `downshift` starts (default 0.8)."""
    adapters: dict[str, str] | None = None
    """Tier name -> the LoRA adapter (of that tier's `adapters`) this tenant's requests use."""
    shadow: bool | None = None
    """false: this tenant's prompts are never sampled by shadow checks."""

    @model_validator(mode="after")
    def _one_rule(self) -> Policy:
        if self.goal is not None and self.quality_target is not None:
            raise ValueError("set `goal` or the legacy `quality_target`, not both")
        return self


class TenantConfig(Frozen):
    name: str
    keys: list[SecretStr] = Field(default_factory=list)
    """API keys: `sha256:<hex>` (from `rung keys new`), or a raw key from `${ENV}`."""
    policy: Policy = Policy()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TENANT.match(value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (at most 100)")
        return value

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            text = key.get_secret_value()
            if text.startswith("sha256:") and not _HASHED.match(text):
                raise ValueError("a hashed key is 'sha256:' and 64 lower-case hex digits")
            if len(text) < 16:
                raise ValueError("an API key must have at least 16 characters")
        return value


class AuthConfig(Frozen):
    open_tenant: str | None = None
    """Requests without an Authorization header belong to this tenant (local use only: a
    production config must not set it). A wrong key is still refused."""


class LimitsConfig(Frozen):
    """Where spend and rate-limit counters live."""

    store: Literal["memory", "redis"] = "memory"
    """`memory`: this process only; `redis`: exact across every replica."""
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_timeout_ms: float = Field(default=200.0, gt=0, le=10_000)
    redis_replica_acks: int = Field(default=0, ge=0, le=8)
    """Spend writes (reservations, settlements, usage records) count as done once this many
    replicas acknowledged them (Redis `WAIT`, within `redis_timeout_ms`): a failover cannot
    then lose one. A write fewer replicas took in time is treated as failed (kept and
    written again; settlements are idempotent). 0: the primary's word is enough."""
    on_store_failure: Literal["fail_closed", "fail_open"] = "fail_closed"
    """Redis unreachable: `fail_closed` refuses metered requests with 503; `fail_open` serves
    them and reconciles their cost when Redis is back (bounded: `fail_open_max_requests`).
    Either way, a request already served whose settlement fails is kept and settled when
    Redis is back."""
    fail_open_max_requests: int = Field(default=10_000, ge=0)
    reservation_lease_s: float = Field(default=600.0, gt=0)
    """A reservation stops counting by itself after this long if nothing settles it (a
    gateway crashed mid-request, a store reply was lost); keep it above the longest request."""
    timezone: str = "UTC"
    """Where days and months roll over (an IANA name, e.g. Europe/Berlin)."""
    usage_records_max: int = Field(default=100_000, ge=0)
    """Usage records kept (oldest dropped first)."""
    default_max_tokens: int = Field(default=4096, ge=1)
    """max_tokens for requests that set none, when the policy sets no cap."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "unknown time zone (use an IANA name such as UTC or Europe/Berlin)"
            ) from None
        return value

    _redis_url = field_validator("redis_url")(check_redis_url)

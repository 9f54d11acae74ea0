"""The typed admin config: one frozen object built at startup from a YAML file."""

from rung.config.goal import DEFAULT_GOAL, GoalConfig
from rung.config.loader import load_config, parse_config
from rung.config.models import (
    ROUTED_MODEL_NAMES,
    BackendConfig,
    CacheConfig,
    EscalationConfig,
    HealthSettings,
    LocalTier,
    Price,
    RoutingConfig,
    RungConfig,
    ServerSettings,
    ShadowConfig,
    TierConfig,
    TracingConfig,
)
from rung.config.tenants import AuthConfig, LimitsConfig, Policy, TenantConfig

__all__ = [
    "DEFAULT_GOAL",
    "ROUTED_MODEL_NAMES",
    "AuthConfig",
    "BackendConfig",
    "CacheConfig",
    "EscalationConfig",
    "GoalConfig",
    "HealthSettings",
    "LimitsConfig",
    "LocalTier",
    "Policy",
    "Price",
    "RoutingConfig",
    "RungConfig",
    "ServerSettings",
    "ShadowConfig",
    "TenantConfig",
    "TierConfig",
    "TracingConfig",
    "load_config",
    "parse_config",
]

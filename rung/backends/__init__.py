"""Talking to model servers: the OpenAI-compatible client, tier pools with failover, fakes."""

from rung.backends.client import Json, OpenAIClient
from rung.backends.pool import OpenStream, Replica, TierPool, describe, probe_forever

__all__ = ["Json", "OpenAIClient", "OpenStream", "Replica", "TierPool", "describe", "probe_forever"]

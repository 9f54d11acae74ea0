"""The request pipeline: decide a tier, call it, fall back up the ladder when a tier is down.

This is the only module that sequences I/O. Later steps (cache, escalation, accounting) slot in
here, in the order ARCHITECTURE.md gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rung.backends import Json, OpenStream, TierPool
from rung.config import ROUTED_MODEL_NAMES, RungConfig
from rung.errors import BackendError, BackendTimeout, ModelNotFound, NoBackendAvailable
from rung.router.decide import Query, TierChooser, fallback_order

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    order: tuple[int, ...]
    """Tiers to try, in order."""
    reason: str
    decided: int


@dataclass
class Served:
    """What the pipeline did for one request, for headers, logs and later for accounting."""

    tier: int = -1
    model: str = ""
    reason: str = ""
    fallback: list[str] = field(default_factory=list)

    def headers(self, config: RungConfig) -> dict[str, str]:
        headers = {
            "x-rung-tier": config.tiers[self.tier].name,
            "x-rung-model": self.model,
            "x-rung-route-reason": self.reason,
        }
        if self.fallback:
            headers["x-rung-fallback"] = "; ".join(self.fallback)
        return headers


class Pipeline:
    def __init__(self, config: RungConfig, pools: list[TierPool], chooser: TierChooser) -> None:
        self.config = config
        self.pools = pools
        self.chooser = chooser

    async def plan(self, model: str, query: Query) -> Plan:
        if model in ROUTED_MODEL_NAMES:
            decision = await self.chooser.choose(query)
            order = fallback_order(decision.tier, len(self.pools))
            return Plan(order, decision.reason, decision.tier)
        pinned = self.config.tier_index(model)
        if pinned is None:
            names = ", ".join([*ROUTED_MODEL_NAMES, *(t.name for t in self.config.tiers)])
            raise ModelNotFound(
                f"The model '{model}' does not exist. Use one of: {names}.", param="model"
            )
        # A pinned tier is a promise: it fails over between its replicas, never to another tier.
        return Plan((pinned,), "pinned", pinned)

    async def complete(self, path: str, payload: Json, plan: Plan) -> tuple[Json, Served]:
        async def call(pool: TierPool, body: Json) -> Json:
            answer, _ = await pool.complete(path, body)
            return answer

        body, served = await self._over_tiers(plan, payload, call)
        served.model = str(body.setdefault("model", served.model))
        return body, served

    async def open_stream(self, path: str, payload: Json, plan: Plan) -> tuple[OpenStream, Served]:
        async def call(pool: TierPool, body: Json) -> OpenStream:
            return await pool.open_stream(path, body)

        return await self._over_tiers(plan, payload, call)

    async def _over_tiers(
        self, plan: Plan, payload: Json, call: Callable[[TierPool, Json], Awaitable[T]]
    ) -> tuple[T, Served]:
        """Try the plan's tiers in order within the request deadline; say what happened."""
        served = Served(reason=plan.reason)
        errors: list[BackendError] = []
        try:
            async with asyncio.timeout(self.config.server.request_timeout_s):
                for index in plan.order:
                    pool = self.pools[index]
                    name = pool.tier.name
                    if not pool.available():
                        served.fallback.append(f"{name}: unavailable")
                        continue
                    try:
                        result = await call(pool, {**payload, "model": pool.tier.model})
                    except BackendError as exc:
                        served.fallback.append(f"{name}: {exc.code}")
                        errors.append(exc)
                        continue
                    served.tier, served.model = index, pool.tier.model
                    if index != plan.decided:
                        served.fallback.append(f"answered by {name}")
                    return result, served
        except TimeoutError:
            raise BackendTimeout(
                f"no tier answered within {self.config.server.request_timeout_s:g}s"
            ) from None
        if not errors:
            raise NoBackendAvailable("no backend is available for this request; try again shortly")
        if all(isinstance(e, BackendTimeout) for e in errors):
            raise BackendTimeout("every backend tried timed out")
        raise BackendError("every backend tried failed: " + "; ".join(served.fallback))

"""Trying a plan's tiers in order within the request deadline: the first that answers
serves, a tier down or failing is skipped (and said so in the fallback trail)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rung.backends import Json, TierPool
from rung.config import RungConfig
from rung.errors import BackendError, BackendTimeout, NoBackendAvailable
from rung.router.capabilities import fit_max_tokens
from rung.router.deadline import Deadlines
from rung.router.plan import Plan, Served

T = TypeVar("T")


async def over_tiers(
    pools: list[TierPool],
    config: RungConfig,
    deadlines: Deadlines,
    plan: Plan,
    payload: Json,
    call: Callable[[TierPool, Json], Awaitable[T]],
) -> tuple[T, Served]:
    """Try the plan's tiers in order within the request deadline; say what happened."""
    served = Served(reason=plan.reason)
    errors: list[BackendError] = []
    deadline = plan.deadline or (
        asyncio.get_running_loop().time() + config.server.request_timeout_s
    )
    try:
        with deadlines.within(deadline):
            for index in plan.order:
                pool = pools[index]
                name = pool.tier.name
                if not pool.available():
                    served.fallback.append(f"{name}: unavailable")
                    continue
                served.tried.append(name)
                adapter = plan.adapters.get(index)
                model = pool.tier.adapters[adapter].model if adapter else pool.tier.model
                fitted = fit_max_tokens(payload, pool.tier.context_window, plan.prompt_tokens)
                try:
                    result = await call(pool, {**fitted, "model": model})
                except BackendError as exc:
                    served.fallback.append(f"{name}: {exc.code}")
                    errors.append(exc)
                    continue
                served.tier, served.model = index, model
                if index != plan.decided:
                    served.fallback.append(f"answered by {name}")
                return result, served
    except TimeoutError:
        raise BackendTimeout(
            f"no tier answered within {config.server.request_timeout_s:g}s"
        ) from None
    if not errors:
        raise NoBackendAvailable("no backend is available for this request; try again shortly")
    if all(isinstance(e, BackendTimeout) for e in errors):
        raise BackendTimeout("every backend tried timed out")
    raise BackendError("every backend tried failed: " + "; ".join(served.fallback))

"""`GET /metrics`: the Prometheus exposition (`server.metrics`: open, admin key, or off)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rung.backends import describe
from rung.errors import ModelNotFound
from rung.router.admin import authorise
from rung.router.metrics import CONTENT_TYPE, Metrics
from rung.router.runtime import Runtime

monitor = APIRouter()


def health_state(runtime: Runtime) -> dict[str, Any]:
    """What the backend and store gauges read at scrape time."""
    pipeline = runtime.pipeline
    state: dict[str, Any] = {
        "tiers": describe(pipeline.pools),
        "cache": pipeline.cache.health() if pipeline.cache is not None else None,
        "limits": runtime.gate.health(),
    }
    shadow = pipeline.shadow
    if shadow is not None:
        policies = runtime.gate.policies
        state["shadow"] = {
            tenant: {
                **shadow.estimate(tenant),
                "goal_keep": getattr(policies[tenant].goal, "keep", None)
                if tenant in policies
                else None,
            }
            for tenant in shadow.tallies
        }
    return state


@monitor.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    mode = runtime.config.server.metrics
    if mode == "off":
        raise ModelNotFound("metrics are off (server.metrics: off)")
    if mode == "admin":
        authorise(request)
    registry: Metrics | None = request.app.state.metrics
    if registry is None:
        raise ModelNotFound("metrics were off when rung started (server.metrics); restart it")
    return Response(registry.render(), 200, media_type=CONTENT_TYPE)

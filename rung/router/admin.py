"""The admin API (`/admin/...`): only with the configured admin key, never a tenant's.

Cache stats and purge; tenant usage and savings (today, this month, by tier) and usage
records; the effective config with secrets redacted; reload.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rung.cache.semantic import SemanticCache
from rung.cache.store import StoreError
from rung.errors import Forbidden, InvalidRequest, ServiceUnavailable, Unauthorized
from rung.router.errors import json_response
from rung.router.pipeline import Pipeline
from rung.tenants.gate import Gate
from rung.tenants.periods import periods
from rung.tenants.redis_counters import CounterError
from rung.tenants.usage import summarize

admin = APIRouter(prefix="/admin")


def authorise(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.runtime.pipeline
    key = pipeline.config.server.admin_key
    if key is None:
        raise Forbidden("the admin API is off: set server.admin_key in the config")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("the admin API needs 'Authorization: Bearer <admin key>'")
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise Forbidden("this key may not use the admin API")
    return pipeline


def _cache(pipeline: Pipeline) -> SemanticCache:
    if pipeline.cache is None:
        raise InvalidRequest("the cache is off (cache.enabled: false)")
    return pipeline.cache


def _tenant(request: Request) -> str:
    tenant = request.query_params.get("tenant", "default")  # no tenants: all is `default`
    if not tenant or len(tenant) > 200:
        raise InvalidRequest("tenant must be a non-empty name", param="tenant")
    return tenant


@admin.get("/cache/stats")
async def cache_stats(request: Request) -> Response:
    cache = _cache(authorise(request))
    try:
        return json_response(await cache.stats(_tenant(request)), 200)
    except (TimeoutError, StoreError) as exc:
        raise ServiceUnavailable(f"the cache store is unavailable: {exc}") from None


@admin.post("/cache/purge")
async def cache_purge(request: Request) -> Response:
    cache = _cache(authorise(request))
    tenant = _tenant(request)
    try:
        removed = await cache.purge(tenant)
    except (TimeoutError, StoreError) as exc:
        raise ServiceUnavailable(f"the cache store is unavailable: {exc}") from None
    return json_response({"tenant": tenant, "purged": removed}, 200)


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.runtime.gate
    return gate


async def budget_view(gate: Gate, tenant: str, day: str, month: str) -> dict[str, Any] | None:
    """A metered tenant's budgets and what is spent (and reserved) against them."""
    policy = gate.policies.get(tenant)
    if policy is None or not policy.metered:
        return None
    spend = await gate.ledger.spend(tenant, day, month)
    return {
        "daily_usd": None if policy.daily_budget is None else policy.daily_budget / 1e6,
        "monthly_usd": None if policy.monthly_budget is None else policy.monthly_budget / 1e6,
        "spent_today_usd": spend.day_spent / 1e6,
        "spent_month_usd": spend.month_spent / 1e6,
        "reserved_usd": spend.day_reserved / 1e6,
    }


@admin.get("/usage")
async def usage_summary(request: Request) -> Response:
    """A tenant's requests, cost and savings (vs its top tier) for today and this month."""
    authorise(request)
    gate = _gate(request)
    tenant = _tenant(request)
    day, month = periods(gate.clock(), gate.config.limits.timezone)
    try:
        body: dict[str, Any] = {"tenant": tenant}
        for name, period in (("today", day), ("month", month)):
            body[name] = {"period": period, **summarize(await gate.usage.sums(tenant, period))}
        budget = await budget_view(gate, tenant, day, month)
        if budget is not None:
            body["budget"] = budget
        shadow = request.app.state.runtime.pipeline.shadow
        if shadow is not None:
            await shadow.refresh(tenant)  # with Redis: every worker's checks, as of now
            body["shadow"] = shadow.estimate(tenant)
    except CounterError as exc:
        raise ServiceUnavailable(f"the usage store is unavailable: {exc}") from None
    return json_response(body, 200)


@admin.get("/usage/records")
async def usage_records(request: Request) -> Response:
    authorise(request)
    gate = _gate(request)
    try:
        since = float(request.query_params.get("since", "0"))
    except ValueError:
        raise InvalidRequest("since must be a UNIX time", param="since") from None
    try:
        records = await gate.usage.records(_tenant(request), since)
    except CounterError as exc:
        raise ServiceUnavailable(f"the usage store is unavailable: {exc}") from None
    return json_response({"records": records}, 200)


@admin.get("/config")
async def effective_config(request: Request) -> Response:
    """The config being served, secrets redacted (SecretStr dumps as '**********')."""
    pipeline = authorise(request)
    return json_response(pipeline.config.model_dump(mode="json"), 200)


@admin.post("/reload")
async def reload(request: Request) -> Response:
    """Re-read the config file; 200 when the new config serves, 400 with its errors when it was
    refused (the old config keeps serving)."""
    authorise(request)
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise InvalidRequest("this gateway was not started from a config file: nothing to reload")
    result = await reloader.reload()
    return json_response(result, 200 if result["reloaded"] else 400)

"""The admin API (`/admin/...`): only with the configured admin key, never a tenant's.

Cache: per-tenant stats and purge. Tenant usage, the effective config and reload join it with
the tenants issue.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rung.cache.semantic import SemanticCache
from rung.cache.store import StoreError
from rung.errors import Forbidden, InvalidRequest, ServiceUnavailable, Unauthorized
from rung.router.errors import json_response
from rung.router.pipeline import Pipeline

admin = APIRouter(prefix="/admin")


def _authorise(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
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
    tenant = request.query_params.get("tenant", "default")
    if not tenant or len(tenant) > 200:
        raise InvalidRequest("tenant must be a non-empty name", param="tenant")
    return tenant


@admin.get("/cache/stats")
async def cache_stats(request: Request) -> Response:
    cache = _cache(_authorise(request))
    try:
        return json_response(await cache.stats(_tenant(request)), 200)
    except (TimeoutError, StoreError) as exc:
        raise ServiceUnavailable(f"the cache store is unavailable: {exc}") from None


@admin.post("/cache/purge")
async def cache_purge(request: Request) -> Response:
    cache = _cache(_authorise(request))
    tenant = _tenant(request)
    try:
        removed = await cache.purge(tenant)
    except (TimeoutError, StoreError) as exc:
        raise ServiceUnavailable(f"the cache store is unavailable: {exc}") from None
    return json_response({"tenant": tenant, "purged": removed}, 200)

"""The savings dashboard: `GET /dashboard` (a static page, no build step, no CDN) and the admin
JSON it reads, `GET /admin/dashboard` (admin key). The page asks for the admin key and keeps it
in the tab's sessionStorage only; without it the data endpoint refuses."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rung.errors import Forbidden, InvalidRequest, ServiceUnavailable
from rung.router.admin import authorise, budget_view
from rung.router.errors import json_response
from rung.router.plan import DEFAULT_TENANT
from rung.tenants.gate import Gate
from rung.tenants.periods import periods
from rung.tenants.redis_counters import CounterError
from rung.tenants.report import tenant_view
from rung.tenants.usage import summarize

dashboard = APIRouter()
PAGE_HEADERS = {
    # Everything is inline and same-origin: nothing may load from elsewhere.
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
    "cache-control": "no-store",
}


@dashboard.get("/dashboard")
async def page(request: Request) -> Response:
    gate: Gate = request.app.state.runtime.gate
    if gate.config.server.admin_key is None:
        raise Forbidden("the dashboard needs the admin API: set server.admin_key in the config")
    html = resources.files("rung.router").joinpath("static/dashboard.html").read_bytes()
    return Response(html, 200, PAGE_HEADERS, media_type="text/html; charset=utf-8")


@dashboard.get("/admin/dashboard")
async def figures(request: Request) -> Response:
    authorise(request)
    gate: Gate = request.app.state.runtime.gate
    try:
        days = float(request.query_params.get("days", "7"))
    except ValueError:
        raise InvalidRequest("days must be a number", param="days") from None
    if not 0 < days <= 31:
        raise InvalidRequest("days must be in (0, 31]", param="days")
    now = gate.clock()
    since = now - days * 86400
    day, month = periods(now, gate.config.limits.timezone)
    names = [t.name for t in gate.config.tenants] or [DEFAULT_TENANT]
    tenants: dict[str, Any] = {}
    try:
        for name in names:
            view = tenant_view(await gate.usage.records(name, since), now, days)
            view["today"] = summarize(await gate.usage.sums(name, day))
            view["month"] = summarize(await gate.usage.sums(name, month))
            view["budget"] = await budget_view(gate, name, day, month)
            tenants[name] = view
    except CounterError as exc:
        raise ServiceUnavailable(f"the usage store is unavailable: {exc}") from None
    body = {
        "generated_at": now,
        "days": days,
        "tiers": [t.name for t in gate.config.tiers],
        "records_kept": gate.config.limits.usage_records_max,
        "tenants": tenants,
    }
    return json_response(body, 200)

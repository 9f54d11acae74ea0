"""Logging set-up: rung's text format, or one JSON object per line (`server.log_format: json`)
with a line per request (`rung.request`) that carries its id and what rung did with it, never
its prompt, answer or key."""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

import orjson

from rung.tenants.usage import UsageRecord

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGER = "rung.request"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def request_id(given: str | None) -> str:
    """The client's `x-request-id` when it is a sane token, else a fresh one."""
    if given is not None and _REQUEST_ID.match(given):
        return given
    return secrets.token_hex(16)  # uuid4().hex without its bit-fiddling: same 32 hex digits


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def request_fields(
    rid: str,
    route: str,
    status: int,
    seconds: float,
    record: UsageRecord | None,
    reason: str,
    stages: dict[str, float],
    upstream_id: str = "",
) -> dict[str, Any]:
    """The per-request line's fields: ids, outcome, latencies, tokens, cost. No text, no key.
    `status` is the outcome: a stream that broke after its 200 went out is its settled 502."""
    fields: dict[str, Any] = {
        "request_id": rid,
        "upstream_request_id": upstream_id or None,
        "route": route,
        "status": record.status if record is not None and record.status else status,
        "latency_ms": round(1000 * seconds, 2),
        "stages_ms": {k: round(1000 * v, 2) for k, v in stages.items()},
    }
    if record is not None:
        fields |= {
            "tenant": record.tenant,
            "tier": record.tier or None,
            "tiers_tried": record.tiers,
            "route_reason": reason,
            "cache": record.cache,
            "escalated": record.escalated,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cost_usd": record.cost / 1_000_000,
            "top_tier_cost_usd": record.top_tier_cost / 1_000_000,
        }
    return fields

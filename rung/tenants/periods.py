"""The budget periods a moment falls in, in the configured time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def periods(now: float, timezone: str) -> tuple[str, str]:
    """(day, month) keys, e.g. ("2026-11-29", "2026-11"), for a UNIX time."""
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


def seconds_to_next_minute(now: float) -> float:
    return 60.0 - (now % 60.0)

"""Spend ledger and rate-limit counters: protocols and the in-memory stores.

Ledger: before a call, `reserve` its most expensive outcome against the tenant's day and month;
after it, `settle` to the actual cost and release the rest. A reservation that does not fit is
refused, so a budget is never exceeded, also under concurrency (the memory store's check-and-add
runs without an await in between; the Redis store's in one Lua script).

Rate limits: fixed one-minute windows of requests and tokens per tenant. Tokens are admitted at
their upper bound (prompt + max_tokens) and adjusted to the actual count afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_LEASE_S = 600.0


@dataclass(frozen=True)
class Hold:
    """A reservation: what `settle` needs to release it. It is a lease: if nothing settles it
    within `lease_s` (a gateway crashed mid-request, a reply to the store was lost), it stops
    counting by itself; a late settlement then adds the spend and releases nothing twice."""

    tenant: str
    day: str
    month: str
    amount: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lease_s: float = DEFAULT_LEASE_S


@dataclass(frozen=True)
class Spend:
    day_spent: int = 0
    day_reserved: int = 0
    month_spent: int = 0
    month_reserved: int = 0

    @property
    def day_used(self) -> int:
        return self.day_spent + self.day_reserved

    @property
    def month_used(self) -> int:
        return self.month_spent + self.month_reserved


@dataclass(frozen=True)
class Admission:
    allowed: bool
    requests: int
    """Requests counted in this window (including this one when allowed)."""
    tokens: int


class Ledger(Protocol):
    async def reserve(self, hold: Hold, daily: int | None, monthly: int | None) -> bool: ...

    async def settle(self, hold: Hold, actual: int) -> bool:
        """Charge `actual` and release the reservation; False when its lease had already run
        out (the spend is added all the same: it happened). Idempotent: the same hold settled
        again (its first reply was lost) counts once."""

    async def renew(self, holds: list[Hold]) -> set[str]:
        """Extend live reservations by their lease from now; returns the ids of those that
        were no longer live (their lease ran out before the renewal)."""

    async def spend(self, tenant: str, day: str, month: str) -> Spend: ...

    async def aclose(self) -> None: ...


class RateLimiter(Protocol):
    async def admit(
        self,
        tenant: str,
        minute: int,
        requests_limit: int | None,
        tokens_limit: int | None,
        tokens: int,
    ) -> Admission: ...

    async def adjust(self, tenant: str, minute: int, tokens: int) -> None:
        """Add (or with a negative count, give back) tokens in a window."""

    async def aclose(self) -> None: ...


class MemoryLedger:
    """One process's ledger; periods beyond the last `keep` are forgotten."""

    def __init__(self, keep: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.keep = keep
        self.clock = clock
        self._periods: OrderedDict[tuple[str, str], list[int]] = OrderedDict()  # [spent, reserved]
        self._holds: dict[str, tuple[Hold, float]] = {}  # live leases: id -> (hold, expiry)
        self._settled: OrderedDict[str, None] = OrderedDict()  # the last `keep` settled ids

    def _expire(self) -> None:
        now = self.clock()
        for hold_id in [h for h, (_, until) in self._holds.items() if until <= now]:
            hold, _ = self._holds.pop(hold_id)
            for period in (hold.day, hold.month):
                self._period(hold.tenant, period)[1] -= hold.amount

    def _period(self, tenant: str, period: str) -> list[int]:
        key = (tenant, period)
        counters = self._periods.get(key)
        if counters is None:
            counters = self._periods[key] = [0, 0]
            while len(self._periods) > self.keep:
                self._periods.popitem(last=False)
        return counters

    async def reserve(self, hold: Hold, daily: int | None, monthly: int | None) -> bool:
        self._expire()
        day = self._period(hold.tenant, hold.day)
        month = self._period(hold.tenant, hold.month)
        if daily is not None and sum(day) + hold.amount > daily:
            return False
        if monthly is not None and sum(month) + hold.amount > monthly:
            return False
        day[1] += hold.amount
        month[1] += hold.amount
        self._holds[hold.id] = (hold, self.clock() + hold.lease_s)
        return True

    async def settle(self, hold: Hold, actual: int) -> bool:
        self._expire()
        if hold.id in self._settled:  # written again: counted once (as Redis does)
            return True
        self._settled[hold.id] = None
        if len(self._settled) > self.keep:
            self._settled.popitem(last=False)
        live = self._holds.pop(hold.id, None) is not None
        for period in (hold.day, hold.month):
            counters = self._period(hold.tenant, period)
            counters[0] += actual
            if live:  # an expired lease was released already
                counters[1] -= hold.amount
        return live

    async def renew(self, holds: list[Hold]) -> set[str]:
        self._expire()
        now, lapsed = self.clock(), set()
        for hold in holds:
            if hold.id in self._holds:
                self._holds[hold.id] = (hold, now + hold.lease_s)
            else:
                lapsed.add(hold.id)
        return lapsed

    async def spend(self, tenant: str, day: str, month: str) -> Spend:
        self._expire()
        d = self._periods.get((tenant, day), [0, 0])
        m = self._periods.get((tenant, month), [0, 0])
        return Spend(d[0], d[1], m[0], m[1])

    async def aclose(self) -> None:
        return None


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._windows: dict[tuple[str, int], list[int]] = {}  # [requests, tokens]

    async def admit(
        self,
        tenant: str,
        minute: int,
        requests_limit: int | None,
        tokens_limit: int | None,
        tokens: int,
    ) -> Admission:
        # Windows older than the previous minute are never read again.
        for key in [k for k in self._windows if k[1] < minute - 1]:
            del self._windows[key]
        window = self._windows.setdefault((tenant, minute), [0, 0])
        over_requests = requests_limit is not None and window[0] + 1 > requests_limit
        over_tokens = tokens_limit is not None and window[1] + tokens > tokens_limit
        if over_requests or over_tokens:
            return Admission(False, window[0], window[1])
        window[0] += 1
        window[1] += tokens
        return Admission(True, window[0], window[1])

    async def adjust(self, tenant: str, minute: int, tokens: int) -> None:
        window = self._windows.get((tenant, minute))
        if window is not None:
            window[1] = max(0, window[1] + tokens)

    async def aclose(self) -> None:
        return None

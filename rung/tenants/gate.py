"""The tenant gate of the pipeline: authenticate, admit (rate limits, budget state, downshift),
reserve, settle, record usage. Stores are injected; every rule is in `policy` (pure).

Redis faults follow `limits.on_store_failure`: `fail_closed` refuses metered requests with 503;
`fail_open` serves them unmetered and keeps their costs (at most `fail_open_max_requests`) to
add to the ledger when Redis is back. Unmetered tenants (no budget, no limit) never wait on the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rung.config import RungConfig
from rung.errors import InsufficientQuota, RateLimited, ServiceUnavailable
from rung.tenants.counters import Hold, Ledger, RateLimiter
from rung.tenants.keys import KeyRing
from rung.tenants.periods import periods, seconds_to_next_minute
from rung.tenants.policy import (
    TenantPolicy,
    budget_share,
    checked_usage,
    downshift,
    prompt_token_bound,
    request_cost,
    resolve,
    resolve_all,
)
from rung.tenants.redis_counters import CounterError
from rung.tenants.usage import UsageLog, UsageRecord

log = logging.getLogger("rung.tenants")
DEFAULT_TENANT = "default"
Price = tuple[float, float]
"""(input, output) USD per million tokens."""


@dataclass
class Ticket:
    """One request's passage through the gate."""

    policy: TenantPolicy
    """Effective policy (after downshift)."""
    base: TenantPolicy
    max_tokens: int
    token_bound: int
    """Prompt bound + max_tokens for every choice the request asks for (`n`, `best_of`)."""
    minute: int
    day: str
    month: str
    started: float
    headers: dict[str, str] = field(default_factory=dict)
    began: float = field(default_factory=time.perf_counter)
    """Monotonic start, for the latency (the wall clock `started` dates the record)."""
    choices: int = 1
    """Answers one backend call may generate (`n`, `best_of`): each may use max_tokens."""
    prompt_bound: int = 0
    """Prompt tokens the request may be charged in all: the prompt's bound once per choice (a
    tier that fans `n` out reads the prompt `n` times)."""
    hold: Hold | None = None
    lapsed: bool = False
    """Its reservation ran out and could not be renewed (the store was away longer than the
    lease): a stream still running is cut, so nothing is spent unreserved."""
    unmetered: bool = False
    """Admitted without the store (fail_open during an outage)."""
    downshift: float = 0.0


@dataclass(frozen=True)
class Outcome:
    tiers: list[str]
    models: list[str]
    tier: str
    """The tier that answered (or the hit's)."""
    price: Price | None
    """The answering tier's price (None: nothing to charge, e.g. a cache hit)."""
    prompt_tokens: object
    completion_tokens: object
    """As the backend reported them (None: not reported); checked before anything believes
    them (`checked_usage`)."""
    cache: str | None
    status: int
    escalated: str | None = None
    earlier: list[tuple[Price, object, object]] = field(default_factory=list)
    """Answers escalated away from: (price, prompt tokens, completion tokens) as reported; a
    None prompt count (a stream cancelled by its probe) is charged at the request's prompt
    bound."""
    estimate: tuple[int, int] | None = None
    """(prompt, completion) tokens estimated from what was relayed, for a stream whose backend
    reported no usage (or one the client hung up on)."""


class Gate:
    def __init__(
        self,
        config: RungConfig,
        ledger: Ledger,
        limiter: RateLimiter,
        usage: UsageLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.limiter = limiter
        self.usage = usage
        self.clock = clock
        self.keys = KeyRing(config.tenants, config.auth.open_tenant)
        self.policies = resolve_all(config)
        # Without tenants in the config there is no authentication: one tenant, the defaults.
        self.open = not config.tenants
        self.default = resolve(config, DEFAULT_TENANT, config.defaults)
        top = config.tiers[-1].price
        self.top_price: Price = (top.input_per_mtok, top.output_per_mtok)
        self._pending: deque[tuple[Hold, int]] = deque()
        self._pending_records: deque[UsageRecord] = deque(
            maxlen=max(1, config.limits.fail_open_max_requests)
        )
        """Usage records the store could not take (the oldest dropped past the bound)."""
        self._live: dict[str, Ticket] = {}
        """Requests holding a reservation, by hold id (renewed until they settle)."""
        self.late_settlements = 0
        self._warned: set[str] = set()
        """Tiers whose invalid usage was logged (once each)."""
        self._down_since: float | None = None
        self.store_errors = 0
        self._reconciler: asyncio.Task[None] | None = None
        self._periods: tuple[int, tuple[str, str]] = (-1, ("", ""))
        """(the second, its day and month): one time-zone conversion per second, not per
        request (every UTC offset in use is a whole number of seconds)."""

    def _periods_at(self, now: float) -> tuple[str, str]:
        second = int(now)
        if self._periods[0] != second:
            self._periods = (second, periods(second, self.config.limits.timezone))
        return self._periods[1]

    def groups(self) -> dict[str, str]:
        return {t: p.cache_group for t, p in self.policies.items() if p.cache_group}

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> TenantPolicy:
        if self.open:
            return self.default
        return self.policies[self.keys.tenant_for(authorization)]

    # -- admission ---------------------------------------------------------------------------

    def _metered(self, policy: TenantPolicy) -> bool:
        return policy.metered or bool(policy.requests_per_minute or policy.tokens_per_minute)

    async def admit(
        self,
        policy: TenantPolicy,
        prompt_bytes: int,
        messages: int,
        requested_max_tokens: int | None,
        choices: int = 1,
    ) -> Ticket:
        now = self.clock()
        day, month = self._periods_at(now)
        max_tokens = min(requested_max_tokens or policy.max_tokens, policy.max_tokens)
        prompt = prompt_token_bound(prompt_bytes, messages) * choices
        bound = prompt + max_tokens * choices
        ticket = Ticket(
            policy,
            policy,
            max_tokens,
            bound,
            int(now // 60),
            day,
            month,
            now,
            choices=choices,
            prompt_bound=prompt,
        )
        if not self._metered(policy):
            return ticket
        try:
            await self._rate_limit(ticket)
            if policy.metered:
                spend = await self.ledger.spend(policy.tenant, day, month)
                share = budget_share(policy, spend.day_used, spend.month_used)
                ticket.policy, ticket.downshift = downshift(policy, share)
                if ticket.downshift > 0:
                    ticket.headers["x-rung-budget-downshift"] = f"{ticket.downshift:.2f}"
        except CounterError as exc:
            self._store_failed(exc)
            ticket.unmetered = True
        self._recovered_if_ok(ticket)
        return ticket

    async def _rate_limit(self, ticket: Ticket) -> None:
        policy = ticket.policy
        rpm, tpm = policy.requests_per_minute, policy.tokens_per_minute
        if not (rpm or tpm):
            return
        admission = await self.limiter.admit(
            policy.tenant, ticket.minute, rpm, tpm, ticket.token_bound
        )
        reset = seconds_to_next_minute(self.clock())
        headers = ticket.headers
        if rpm:
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, rpm - admission.requests))
            headers["x-ratelimit-reset-requests"] = f"{reset:.0f}s"
        if tpm:
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, tpm - admission.tokens))
            headers["x-ratelimit-reset-tokens"] = f"{reset:.0f}s"
        if not admission.allowed:
            too_big = tpm is not None and ticket.token_bound > tpm
            what = (
                f"this request alone may use {ticket.token_bound} tokens, more than the "
                f"{tpm} tokens per minute allowed (lower max_tokens)"
                if too_big
                else "Rate limit reached for requests or tokens per minute"
            )
            raise RateLimited(
                f"{what} (tenant {policy.tenant}). Retry after {math.ceil(reset)}s.",
                headers={**headers, "retry-after": str(math.ceil(reset))},
            )

    async def reserve(self, ticket: Ticket, prices: list[Price], answers: int = 1) -> None:
        """Reserve the costliest outcome of the tiers this request may reach: one answer from
        the dearest, or with escalation, `answers` answers from the dearest ones; each call
        may generate `ticket.choices` answers of max_tokens (`n`, `best_of`)."""
        policy = ticket.policy
        if not policy.metered or ticket.unmetered:
            return
        prompt, generated = ticket.prompt_bound, ticket.max_tokens * ticket.choices
        costs = sorted((request_cost(prompt, generated, i, o) for i, o in prices), reverse=True)
        # One answer per call at most from each tier (fallbacks and escalations go up the
        # ladder), but never fewer calls than `answers`: the dearest cost covers the rest.
        amount = sum(costs[:answers]) + max(0, answers - len(costs)) * costs[0]
        lease = self.config.limits.reservation_lease_s
        hold = Hold(policy.tenant, ticket.day, ticket.month, amount, lease_s=lease)
        try:
            fits = await self.ledger.reserve(hold, policy.daily_budget, policy.monthly_budget)
        except CounterError as exc:
            self._store_failed(exc)
            ticket.unmetered = True
            return
        if not fits:
            raise InsufficientQuota(
                f"Tenant {policy.tenant} has reached its budget: this request may cost up to "
                f"${amount / 1e6:.6f}, more than what is left. Try a smaller max_tokens, or "
                "wait for the next day or month.",
                headers=ticket.headers,
            )
        ticket.hold = hold
        self._live[hold.id] = ticket

    async def renew(self) -> None:
        """Extend the leases of the reservations of requests still running (a long stream
        keeps its money reserved); a request whose lease ran out anyway is marked lapsed."""
        tickets = [t for t in self._live.values() if t.hold is not None]
        if not tickets:
            return
        try:
            lapsed = await self.ledger.renew([t.hold for t in tickets if t.hold is not None])
        except CounterError:
            return  # the store is away: the next round tries again within the lease
        for ticket in tickets:
            if ticket.hold is not None and ticket.hold.id in lapsed:
                ticket.lapsed = True

    async def renew_forever(self) -> None:
        every = max(0.05, self.config.limits.reservation_lease_s / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.renew()
            except Exception:  # a bug in one round must not end renewing for good
                log.exception("reservation renewal failed")

    # -- settlement --------------------------------------------------------------------------

    async def settle(self, ticket: Ticket, outcome: Outcome) -> UsageRecord:
        """Charge the actual cost, release the rest of the reservation, record the usage (and
        return the record, for metrics and logs). Reported usage is believed only within the
        request's bounds (`checked_usage`); else the reservation is charged."""
        completion_bound = ticket.max_tokens * ticket.choices
        bounds = (ticket.prompt_bound, completion_bound)
        reported = (outcome.prompt_tokens, outcome.completion_tokens)
        checked = checked_usage(*reported, *bounds)
        kind: str | None = None  # how far the token counts can be trusted, for the record
        if outcome.price is None:
            prompt, completion, actual = 0, 0, 0
        elif checked is not None:
            prompt, completion = checked
            actual = request_cost(prompt, completion, *outcome.price)
        elif reported == (None, None) and outcome.estimate is not None:
            prompt = min(outcome.estimate[0], ticket.prompt_bound)
            completion = min(outcome.estimate[1], completion_bound)
            actual = request_cost(prompt, completion, *outcome.price)
            kind = "estimated"
        else:
            # No usage, or usage no request could have (negative, absurd): charge what was
            # reserved, never under-count or credit.
            prompt, completion = bounds
            actual = ticket.hold.amount if ticket.hold else request_cost(*bounds, *outcome.price)
            kind = "missing" if reported == (None, None) else "invalid"
            if kind == "invalid":
                self._invalid_usage(outcome.tier, reported)
        for price, p, c in outcome.earlier:
            call = checked_usage(p if p is not None else ticket.prompt_bound, c or 0, *bounds)
            actual += request_cost(*(call or bounds), *price)
        if ticket.hold is not None and actual > ticket.hold.amount:
            # Escalations and fallbacks stay within what was reserved for them; more would
            # mean a bug in the reservation: charge the reservation, say so.
            log.warning(
                "tenant %s: usage costs %d micro-USD, more than the %d reserved; "
                "charging the reservation",
                ticket.base.tenant,
                actual,
                ticket.hold.amount,
            )
            actual = ticket.hold.amount
        top = request_cost(prompt, completion, *self.top_price)
        policy = ticket.base
        if ticket.hold is not None:
            self._live.pop(ticket.hold.id, None)
            try:
                live = await self.ledger.settle(ticket.hold, actual)
            except CounterError as exc:
                # Served already: whatever the failure mode, its cost is kept and settled when
                # the store is back (settling again is idempotent if this one did land).
                self._mark_down(exc)
                self._keep(ticket.hold, actual)
            else:
                if not live:
                    self.late_settlements += 1
                    log.warning(
                        "tenant %s: a request settled after its reservation's lease ran out "
                        "(the store was away longer than limits.reservation_lease_s); its %d "
                        "micro-USD are added to the spend all the same",
                        policy.tenant,
                        actual,
                    )
        elif ticket.unmetered and policy.metered and actual:
            self._keep(Hold(policy.tenant, ticket.day, ticket.month, 0), actual)
        used = prompt + completion
        if (policy.tokens_per_minute) and not ticket.unmetered:
            with contextlib.suppress(CounterError):
                await self.limiter.adjust(policy.tenant, ticket.minute, used - ticket.token_bound)
        record = UsageRecord(
            tenant=policy.tenant,
            time=ticket.started,
            tiers=outcome.tiers,
            models=outcome.models,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=actual,
            top_tier_cost=top,
            cache=outcome.cache,
            escalated=outcome.escalated,
            latency_ms=round(1000 * (time.perf_counter() - ticket.began), 1),
            status=outcome.status,
            tier=outcome.tier,
            day=ticket.day,
            month=ticket.month,
            extra={"usage": kind} if kind else {},
        )
        try:
            await self.usage.append(record)
        except CounterError as exc:
            self._mark_down(exc)
            self._pending_records.append(record)  # written when the store is back (once)
        return record

    def _invalid_usage(self, tier: str, reported: tuple[object, object]) -> None:
        if tier in self._warned or len(self._warned) > 1000:
            return
        self._warned.add(tier)
        log.warning(
            "tier %s reported usage no request could have (prompt %r, completion %r tokens): "
            "charged the reservation instead; logged once per tier",
            tier,
            *(str(v)[:20] for v in reported),
        )

    # -- faults ------------------------------------------------------------------------------

    def _store_failed(self, exc: Exception) -> None:
        self._mark_down(exc)
        if self.config.limits.on_store_failure == "fail_closed":
            raise ServiceUnavailable(
                "the spend ledger is unavailable; metered requests are refused until it is back"
            ) from None
        if len(self._pending) >= self.config.limits.fail_open_max_requests:
            raise ServiceUnavailable(
                "the spend ledger has been unavailable too long; refusing until it is back"
            ) from None

    def _mark_down(self, exc: Exception) -> None:
        self.store_errors += 1
        if self._down_since is None:
            self._down_since = self.clock()
            log.warning(
                "ledger/rate-limit store unavailable (%s); %s",
                exc,
                "serving and reconciling later"
                if self.config.limits.on_store_failure == "fail_open"
                else "refusing metered requests",
            )

    def _keep(self, hold: Hold, actual: int) -> None:
        self._pending.append((replace(hold, amount=hold.amount), actual))

    def _recovered_if_ok(self, ticket: Ticket) -> None:
        if self._down_since is not None and not ticket.unmetered:
            log.warning(
                "ledger/rate-limit store is back after %.1fs", self.clock() - self._down_since
            )
            self._down_since = None

    async def reconcile(self) -> int:
        """Add the costs served during an outage to the ledger, and write the usage records
        that could not be; returns how many remain."""
        while self._pending:
            hold, actual = self._pending[0]
            try:
                await self.ledger.settle(hold, actual)
            except CounterError as exc:
                log.debug("reconciliation waits for the store: %s", exc)
                return len(self._pending) + len(self._pending_records)
            self._pending.popleft()
        while self._pending_records:
            try:
                await self.usage.append(self._pending_records[0])
            except CounterError as exc:
                log.debug("usage records wait for the store: %s", exc)
                return len(self._pending_records)
            self._pending_records.popleft()
        return 0

    async def reconcile_forever(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._pending or self._pending_records:
                await self.reconcile()

    async def aclose(self) -> None:
        for store in (self.ledger, self.limiter, self.usage):
            with contextlib.suppress(Exception):
                await store.aclose()

    async def probe(self) -> None:
        """While the store is marked down, one cheap read: recovery shows in /readyz without
        waiting for a metered request."""
        if self._down_since is None:
            return
        try:
            await self.ledger.spend(
                "rung-readiness-probe", *periods(self.clock(), self.config.limits.timezone)
            )
        except CounterError:
            return
        log.warning("ledger/rate-limit store is back after %.1fs", self.clock() - self._down_since)
        self._down_since = None

    def health(self) -> dict[str, object]:
        return {
            "store": self.config.limits.store,
            "available": self._down_since is None,
            "mode": self.config.limits.on_store_failure,
            "errors": self.store_errors,
            "pending_settlements": len(self._pending),
            "pending_usage_records": len(self._pending_records),
        }

"""Shadow checks on live traffic: for a sampled share of routed answers that the top tier did not
give, ask the top tier too, off the client's path, and judge whether the served answer agrees.

Never on the client's path (a background task after the answer went out), never changing the
answer, bounded in concurrency and in calls per day, skipped when the top tier is out of rotation
or a slot is not free at once, never for tenants that opt out (`policy.shadow: false`), and
nothing written to disk unless `shadow.record` names a file (prompt text only with
`shadow.record_text: true`). The estimate per tenant and tier is the share of sampled answers
that agree with the top tier's, with a 95% Wilson interval; `keeps` combines it with the share
of traffic each tier served: the quality routing keeps relative to always asking the top tier.

With `shadow.record`, three kinds of outcome lines (`rung label`'s format, keyed by each tier's
model) feed the learning loop (`rung learn`, `rung calibrate`): `shadow` (a served answer vs the
reference's), `explore` (for a share of the reference's own answers, the smallest tier's answer
vs it: what routing could have sent lower) and `escalation` (the answer escalated away from, with
its confidence signals, vs the one served; free, no model is asked).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rung.backends import TierPool
from rung.cache.fit import wilson
from rung.classifiers.grading import extract_choice, extract_number, normalise
from rung.confidence.signals import Signals
from rung.config import RungConfig, ShadowConfig
from rung.errors import BackendError, BackendRejected
from rung.router.conversations import answer_text
from rung.router.guard import next_hold
from rung.router.plan import Plan, Served
from rung.router.shadow_store import Pooled, SharedEvidence, Turn, adopt
from rung.tenants.periods import periods

log = logging.getLogger("rung.router")


def agree(served: str, reference: str) -> bool:
    """Does the served answer say what the top tier's does? The option letter when the
    reference settles on one, else its final number, else the normalised text."""
    choice = extract_choice(reference)
    if choice is not None:
        return extract_choice(served) == choice
    number = extract_number(reference)
    if number is not None:
        return extract_number(served) == number
    return normalise(served) == normalise(reference)


@dataclass
class Tally:
    served: int = 0
    """Routed answers this tier gave (sampled or not)."""
    sampled: int = 0
    agreed: int = 0


Answer = tuple[str, str, Signals | None]
"""(tier name, answer text, the answer's confidence signals when the backend sent logprobs)."""
Reference = tuple[str, str]
"""(tier name, answer text) of the answer another is judged against."""


@dataclass
class Shadow:
    config: ShadowConfig
    top: TierPool
    top_name: str
    models: dict[str, str] = field(default_factory=dict)
    """Tier name -> its `model`: the key of its outcomes in the records (as in `rung label`'s
    files and the ladders that name them)."""
    explorer: TierPool | None = None
    """The smallest tier: asked about a share of the reference tier's own answers
    (`explore_rate`), so the records also say where a cheaper tier would have done."""
    rng: random.Random = field(default_factory=random.Random)
    tallies: dict[str, dict[str, Tally]] = field(default_factory=lambda: defaultdict(dict))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recorded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Lines written per source: shadow, explore, escalation."""
    holds: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    """Tenant -> tier held back by the guard -> the monotonic time its hold ends."""
    checks: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Completed checks per tenant: the guard re-reads a tenant's tallies only when it grew."""
    checked: Callable[[str, str, bool], None] | None = None
    """Told of each completed check (tenant, tier, agreed): the metrics' counter."""
    shared: SharedEvidence | None = None
    """With `limits.store: redis`: tallies and holds pooled over every worker and replica."""
    turns: dict[str, Turn] = field(default_factory=dict)
    """Per tenant, what this worker counted (and the holds it started or saw end) that has not
    reached the shared store yet."""
    _warned: bool = False
    _judged: dict[str, int] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _day: str = ""
    _calls_today: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def check_served(
        self,
        config: RungConfig,
        plan: Plan,
        served: Served,
        payload: dict[str, Any],
        body: dict[str, Any] | None,
        allowed: bool,
    ) -> None:
        """A routed chat answer went out: count it, maybe check it against the reference
        tier, and record each escalation's (answer, better answer) pair."""
        if served.tier < 0 or body is None:
            return
        answer = answer_text(body)
        name = config.tiers[served.tier].name
        self.observe(plan.tenant, name, allowed, payload, answer, served.signals)
        chain = [(config.tiers[c.tier].name, c.text, c.signals) for c in served.calls]
        chain.append((name, answer, served.signals))
        for (tier, text, signals), (then, final, _) in itertools.pairwise(chain):
            if text is not None and final is not None:
                self.escalated(plan.tenant, allowed, payload, (tier, text, signals), (then, final))

    def observe(
        self,
        tenant: str,
        tier: str,
        opted_in: bool,
        payload: dict[str, Any],
        answer: str | None,
        signals: Signals | None = None,
    ) -> None:
        """A routed answer went out: count it and maybe check it (in the background)."""
        tally = self.tallies[tenant].setdefault(tier, Tally())
        tally.served += 1
        if self.shared is not None:
            self._turn(tenant).add(tier, "served")
        if answer is None or not opted_in:
            return
        if tier == self.top_name:
            self._maybe_explore(tenant, payload, answer)
            return
        if self.rng.random() >= self.config.rate:
            return
        reason = self._why_not_now(self.top)
        if reason is not None:
            self.skipped[reason] += 1
            return
        self._spawn(self._check(tenant, (tier, answer, signals), payload))

    def escalated(
        self, tenant: str, opted_in: bool, payload: dict[str, Any], first: Answer, final: Reference
    ) -> None:
        """An answer was escalated away from: the first answer's signals and whether it agreed
        with the one served become a record for recalibration (no model call: it is free)."""
        if self.config.record is None or not self.config.record_escalations or not opted_in:
            return
        self._record("escalation", tenant, payload, first, final, agree(first[1], final[1]))

    def _maybe_explore(self, tenant: str, payload: dict[str, Any], answer: str) -> None:
        explorer = self.explorer
        if explorer is None or self.config.record is None:
            return  # an exploration nobody records teaches nothing
        if self.rng.random() >= self.config.explore_rate:
            return
        reason = self._why_not_now(explorer)
        if reason is not None:
            self.skipped[f"explore_{reason}"] += 1
            return
        self._spawn(self._explore(tenant, payload, answer, explorer))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _why_not_now(self, pool: TierPool) -> str | None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
        if self._slots.locked():
            return "busy"
        day, _ = periods(time.time(), "UTC")
        if day != self._day:
            self._day, self._calls_today = day, 0
        if self._calls_today >= self.config.max_calls_per_day:
            return "daily_limit"
        if not pool.available():
            return "top_tier_unavailable" if pool is self.top else "tier_unavailable"
        return None

    async def _ask(self, pool: TierPool, payload: dict[str, Any], failed: str) -> str | None:
        body = {k: v for k, v in payload.items() if k not in ("stream", "stream_options", "n")}
        body["model"] = pool.tier.model
        try:
            reply, _ = await pool.complete("/chat/completions", body)
        except (BackendError, BackendRejected) as exc:
            self.skipped[failed] += 1
            log.debug("shadow call failed: %s", exc)
            return None
        text = answer_text(reply)
        if text is None:
            self.skipped["no_reference"] += 1
        return text

    async def _check(self, tenant: str, answered: Answer, payload: dict[str, Any]) -> None:
        assert self._slots is not None
        async with self._slots:
            self._calls_today += 1
            reference = await self._ask(self.top, payload, "top_tier_failed")
            if reference is None:
                return
            same = agree(answered[1], reference)
            tally = self.tallies[tenant].setdefault(answered[0], Tally())
            tally.sampled += 1
            tally.agreed += same
            if self.shared is not None:
                turn = self._turn(tenant)
                turn.add(answered[0], "sampled")
                turn.add(answered[0], "agreed", int(same))
                await self._pool(tenant)
            self.checks[tenant] += 1
            if self.checked is not None:
                self.checked(tenant, answered[0], same)
            if self.config.record is not None:
                self._record("shadow", tenant, payload, answered, (self.top_name, reference), same)

    async def _explore(
        self, tenant: str, payload: dict[str, Any], served: str, explorer: TierPool
    ) -> None:
        assert self._slots is not None
        async with self._slots:
            self._calls_today += 1
            attempt = await self._ask(explorer, payload, "explore_failed")
            if attempt is None:
                return
            answered = (explorer.tier.name, attempt, None)
            reference = (self.top_name, served)
            self._record("explore", tenant, payload, answered, reference, agree(attempt, served))

    def _record(
        self,
        source: str,
        tenant: str,
        payload: dict[str, Any],
        answered: Answer,
        reference: Reference,
        same: bool,
    ) -> None:
        """One outcome line in `rung label`'s shape: the answering tier scored by agreement
        with the reference answer (which scores 1), keyed by each tier's model."""
        tier, answer, signals = answered
        ref_tier, ref_answer = reference
        mine: dict[str, Any] = {"score": float(same), "output_chars": len(answer)}
        if signals is not None:
            mine["signals"] = signals.to_dict()  # only now, for a line that is written
        theirs: dict[str, Any] = {"score": 1.0, "output_chars": len(ref_answer)}
        line: dict[str, Any] = {
            "time": time.time(),
            "source": source,
            "tenant": tenant,
            "dataset": "shadow",
            "tiers": {"answered": tier, "reference": ref_tier},
            "results": {
                self.models.get(tier, tier): mine,
                self.models.get(ref_tier, ref_tier): theirs,
            },
        }
        if self.config.record_text:
            prompt = _prompt(payload)
            digest = hashlib.sha256(prompt.encode()).hexdigest()[:20]
            line |= {"id": f"shadow/{digest}", "prompt": prompt, "answer": answer,
                     "reference": ref_answer}  # fmt: skip
            # Each answer's text beside its score: `rung learn` fits the answer verifier on it.
            mine["text"], theirs["text"] = answer, ref_answer
        path = Path(str(self.config.record))
        with path.open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")
        self.recorded[source] += 1

    def held_back(
        self,
        tenant: str,
        keep: float | None,
        now: float,
        expected: Callable[[], Mapping[str, float]] = dict,
    ) -> frozenset[str]:
        """The tiers the guard holds back for this tenant's routed requests now (`now`:
        monotonic seconds). Ends the holds that are over (their tallies start afresh) and, when
        checks completed since the last look and `keep` is a goal to guard, maybe starts one.
        `expected`: each tier's agreement when traffic is like the validation split's (asked
        only when the guard looks)."""
        holds = self.holds.get(tenant)
        if holds:
            for tier in [t for t, end in holds.items() if end <= now]:
                if self.shared is not None:  # clears the tier's pooled sums too, once
                    self._turn(tenant).ended[tier] = time.time() + holds[tier] - now
                del holds[tier]
                self.tallies[tenant].pop(tier, None)
                log.warning("shadow guard: tenant %s: tier %s serves again", tenant, tier)
        done = self.checks.get(tenant, 0)
        if keep is not None and self.config.guard and self._judged.get(tenant) != done:
            self._judged[tenant] = done
            held = self.holds[tenant]
            tallies = self.tallies.get(tenant, {})
            checks = self.config.guard_min_checks
            hold = next_hold(tallies, self.top_name, keep, checks, held, expected())
            if hold is not None:
                held[hold] = now + self.config.guard_hold_s
                if self.shared is not None:  # the other workers hold it at their next check
                    self._turn(tenant).started[hold] = time.time() + self.config.guard_hold_s
                    self._spawn(self._pool(tenant))
                t = tallies[hold]
                log.warning(
                    "shadow guard: tenant %s: holding back tier %s for %.0f s (%d of %d checked "
                    "answers agree with %s; goal keep %.2f)",
                    tenant, hold, self.config.guard_hold_s, t.agreed, t.sampled, self.top_name,
                    keep,
                )  # fmt: skip
        return frozenset(self.holds.get(tenant, ()))

    def estimate(self, tenant: str) -> dict[str, Any]:
        """Per tier: agreement with the top tier on sampled answers (Wilson 95%), and what
        routing keeps overall: sum over tiers of (share served × agreement), the top tier's
        own answers counting as kept. A tier the guard holds back serves no routed request
        until its hold ends, so what routing keeps *now* leaves it out (its row stays)."""
        tallies = self.tallies.get(tenant, {})
        held = self.holds.get(tenant, {})
        live = {name: t for name, t in tallies.items() if name not in held}
        total = sum(t.served for t in live.values())
        tiers: dict[str, Any] = {}
        keeps = low = high = 0.0
        for name, t in sorted(tallies.items()):
            share = t.served / total if total and name in live else 0.0
            if name == self.top_name:
                rate, lo, hi = 1.0, 1.0, 1.0
            else:
                rate = t.agreed / t.sampled if t.sampled else float("nan")
                lo, hi = wilson(t.agreed, t.sampled)
            tiers[name] = {
                "served": t.served,
                "sampled": t.sampled,
                "agreement": None if math.isnan(rate) else round(rate, 4),
                "ci95": [round(lo, 4), round(hi, 4)],
            }
            keeps += share * (0.0 if math.isnan(rate) else rate)
            low, high = low + share * lo, high + share * hi
        # Unknown while a tier that served has no checked answer yet (e.g. a tenant that opted out).
        known = total > 0 and all(
            t.sampled or name == self.top_name or not t.served for name, t in live.items()
        )
        return {
            "tiers": tiers,
            "keeps": round(keeps, 4) if known else None,
            "keeps_ci95": [round(low, 4), round(high, 4)] if known else None,
            "skipped": dict(self.skipped),
            "recorded": dict(self.recorded),
            "held_back": sorted(self.holds.get(tenant, ())),
        }

    def _turn(self, tenant: str) -> Turn:
        turn = self.turns.get(tenant)
        if turn is None:
            turn = self.turns[tenant] = Turn()
        return turn

    async def refresh(self, tenant: str) -> None:
        """With a shared store: take every worker's evidence now (an admin asked for it)."""
        if self.shared is not None:
            await self._pool(tenant)

    async def _pool(self, tenant: str) -> None:
        """Send this worker's turn to the shared store and take every worker's sums and holds
        as this worker's view (plus what it counted meanwhile)."""
        assert self.shared is not None
        turn = self.turns.pop(tenant, Turn())
        try:
            pooled = await self.shared.sync(tenant, turn)
        except Exception as exc:  # nothing lost: the turn waits for the next check
            self._turn(tenant).merge(turn)
            self.skipped["store_failed"] += 1
            if not self._warned:
                log.warning("shadow store unavailable (estimates are this worker's): %s", exc)
                self._warned = True
            return
        self._warned = False
        self._adopt(tenant, pooled)

    def _adopt(self, tenant: str, pooled: Pooled) -> None:
        wall, now = time.time(), time.monotonic()
        turn = self._turn(tenant)
        counts, running, over = adopt(pooled, turn, wall)
        self.tallies[tenant] = {
            tier: Tally(c["served"], c["sampled"], c["agreed"]) for tier, c in counts.items()
        }
        turn.ended.update(over)
        holds = self.holds[tenant]
        for tier, end in running.items():
            holds[tier] = max(holds.get(tier, 0.0), now + end - wall)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()


def _prompt(payload: dict[str, Any]) -> str:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return ""
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = users[-1] if users else ""
    return last if isinstance(last, str) else ""

"""Shadow checks on live traffic: for a sampled share of routed answers that the top tier did not
give, ask the top tier too, off the client's path, and judge whether the served answer agrees.

Never on the client's path (a background task after the answer went out), never changing the
answer, bounded in concurrency and in calls per day, skipped when the top tier is out of rotation
or a slot is not free at once, never for tenants that opt out (`policy.shadow: false`), and
nothing written to disk unless `shadow.record` names a file (prompt text only with
`shadow.record_text: true`). The estimate per tenant and tier is the share of sampled answers
that agree with the top tier's, with a 95% Wilson interval; `keeps` combines it with the share
of traffic each tier served: the quality routing keeps relative to always asking the top tier.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rung.backends import TierPool
from rung.cache.fit import wilson
from rung.classifiers.grading import extract_choice, extract_number, normalise
from rung.config import ShadowConfig
from rung.errors import BackendError, BackendRejected
from rung.router.conversations import answer_text
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


@dataclass
class Shadow:
    config: ShadowConfig
    top: TierPool
    top_name: str
    rng: random.Random = field(default_factory=random.Random)
    tallies: dict[str, dict[str, Tally]] = field(default_factory=lambda: defaultdict(dict))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _slots: asyncio.Semaphore | None = None
    _day: str = ""
    _calls_today: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def observe(
        self, tenant: str, tier: str, opted_in: bool, payload: dict[str, Any], answer: str | None
    ) -> None:
        """A routed answer went out: count it and maybe check it (in the background)."""
        tally = self.tallies[tenant].setdefault(tier, Tally())
        tally.served += 1
        if tier == self.top_name or answer is None or not opted_in:
            return
        if self.rng.random() >= self.config.rate:
            return
        reason = self._why_not_now()
        if reason is not None:
            self.skipped[reason] += 1
            return
        task = asyncio.get_running_loop().create_task(self._check(tenant, tier, payload, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _why_not_now(self) -> str | None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
        if self._slots.locked():
            return "busy"
        day, _ = periods(time.time(), "UTC")
        if day != self._day:
            self._day, self._calls_today = day, 0
        if self._calls_today >= self.config.max_calls_per_day:
            return "daily_limit"
        if not self.top.available():
            return "top_tier_unavailable"
        return None

    async def _check(self, tenant: str, tier: str, payload: dict[str, Any], answer: str) -> None:
        assert self._slots is not None
        async with self._slots:
            self._calls_today += 1
            body = {k: v for k, v in payload.items() if k not in ("stream", "stream_options", "n")}
            body["model"] = self.top.tier.model
            try:
                reply, _ = await self.top.complete("/chat/completions", body)
            except (BackendError, BackendRejected) as exc:
                self.skipped["top_tier_failed"] += 1
                log.debug("shadow check failed: %s", exc)
                return
            reference = answer_text(reply)
            if reference is None:
                self.skipped["no_reference"] += 1
                return
            same = agree(answer, reference)
            tally = self.tallies[tenant].setdefault(tier, Tally())
            tally.sampled += 1
            tally.agreed += same
            if self.config.record is not None:
                self._record(tenant, tier, payload, answer, reference, same)

    def _record(
        self,
        tenant: str,
        tier: str,
        payload: dict[str, Any],
        answer: str,
        reference: str,
        same: bool,
    ) -> None:
        """One outcome line in `rung label`'s shape: the served tier scored against the top."""
        line: dict[str, Any] = {
            "time": time.time(),
            "tenant": tenant,
            "dataset": "shadow",
            "results": {tier: {"score": float(same)}, self.top_name: {"score": 1.0}},
        }
        if self.config.record_text:
            line |= {"prompt": _prompt(payload), "answer": answer, "reference": reference}
        path = Path(str(self.config.record))
        with path.open("ab") as out:
            out.write(orjson.dumps(line) + b"\n")

    def estimate(self, tenant: str) -> dict[str, Any]:
        """Per tier: agreement with the top tier on sampled answers (Wilson 95%), and what
        routing keeps overall: sum over tiers of (share served × agreement), the top tier's
        own answers counting as kept."""
        tallies = self.tallies.get(tenant, {})
        total = sum(t.served for t in tallies.values())
        tiers: dict[str, Any] = {}
        keeps = low = high = 0.0
        for name, t in sorted(tallies.items()):
            share = t.served / total if total else 0.0
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
            t.sampled or name == self.top_name or not t.served for name, t in tallies.items()
        )
        return {
            "tiers": tiers,
            "keeps": round(keeps, 4) if known else None,
            "keeps_ci95": [round(low, 4), round(high, 4)] if known else None,
            "skipped": dict(self.skipped),
        }

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _prompt(payload: dict[str, Any]) -> str:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return ""
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = users[-1] if users else ""
    return last if isinstance(last, str) else ""

"""Metric updates held in plain dicts and written to prometheus_client in one go.

Each prometheus_client update takes a lock (or an mmap write with several workers) and a
histogram observation walks its buckets: recording one request (a response, its stages, the
settled counters) cost ~8 us. `Tally` sums a counter child's increments and keeps a histogram
child's observations, then `flush()` applies them: one `inc` per counter child, and per histogram
child one bucket count per bucket and one sum. A flush runs a second after the first update that
found nothing pending (on the running loop), before every scrape, and inline once a flush's worth
of updates is pending (so memory stays bounded without a loop, or after a loop that held the
timer is gone). A scrape of this process is exact; with several workers another worker's last
second can be missing from it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from bisect import bisect_left
from typing import Any

log = logging.getLogger("rung.router")
FLUSH_S = 1.0
MAX_PENDING = 10_000


class Tally:
    def __init__(self, flush_s: float = FLUSH_S, max_pending: int = MAX_PENDING) -> None:
        self.flush_s = flush_s
        self.max_pending = max_pending
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._pending = 0
        self._armed = False

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """`child.inc(amount)`, at the next flush. A counter only goes up: a negative or
        non-finite amount (request data rung failed to check) is dropped here, so it can never
        make a flush raise and lose the other updates."""
        if not 0 <= amount < math.inf:
            return
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount
        self._added()

    def observe(self, child: Any, value: float) -> None:
        """`child.observe(value)` for a histogram child, at the next flush."""
        values = self._observed.get(child)
        if values is None:
            self._observed[child] = [value]
        else:
            values.append(value)
        self._added()

    def _added(self) -> None:
        self._pending += 1
        if self._pending >= self.max_pending:
            self.flush()
        elif not self._armed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the next scrape (or the bound) flushes
            self._armed = True
            loop.call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        self._pending, self._armed = 0, False
        for child, amount in counts.items():
            try:
                child.inc(amount)
            except ValueError:  # one bad update must not cost the rest of the second's
                log.exception("a metric update was refused")
        for child, values in observed.items():
            try:
                add_observations(child, values)
            except ValueError:
                log.exception("a metric update was refused")


def add_observations(child: Any, values: list[float]) -> None:
    """What `child.observe(v)` for each value does to a prometheus_client histogram child
    (cumulative buckets are summed at exposition; each observation lands in the first bucket
    whose upper bound holds it), with one update per bucket instead of per value. A client
    without those internals gets the values one by one."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    landed = [0] * len(bounds)
    last = len(bounds) - 1
    for value in values:
        landed[min(bisect_left(bounds, value), last)] += 1
    total.inc(sum(values))
    for index, count in enumerate(landed):
        if count:
            buckets[index].inc(count)

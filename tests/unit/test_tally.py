"""Batched metric updates expose exactly what prometheus_client's own updates would, flush on
their own timer on a loop, and stay bounded without one."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from rung.router.metrics import BUCKETS
from rung.router.tally import Tally, add_observations


def _pair() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["k"], registry=registry)
    histogram = Histogram("h", "h", ["k"], buckets=BUCKETS, registry=registry)
    return registry, counter, histogram


def test_a_flush_exposes_what_direct_updates_would() -> None:
    direct, direct_c, direct_h = _pair()
    batched, batched_c, batched_h = _pair()
    tally = Tally()
    draw = random.Random(7)
    # Values on the bucket bounds themselves too: `le` means "at most".
    values = [draw.choice([*BUCKETS, 0.0, 61.0]) for _ in range(200)]
    values += [draw.expovariate(50) for _ in range(800)]
    for i, value in enumerate(values):
        key = "ab"[i % 2]
        direct_c.labels(key).inc(i % 5)
        direct_h.labels(key).observe(value)
        tally.inc(batched_c.labels(key), i % 5)
        tally.observe(batched_h.labels(key), value)
    assert _samples(batched) != _samples(direct)  # nothing is applied before a flush
    tally.flush()
    got, want = _samples(batched), _samples(direct)
    assert got.keys() == want.keys()
    for key, value in want.items():  # sums are added in another order: equal to rounding
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert want[("h_count", (("k", "a"),))] == 500


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_histogram_without_the_expected_internals_gets_each_value() -> None:
    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    add_observations(plain, [0.1, 0.2])
    assert plain.seen == [0.1, 0.2]


def test_updates_on_a_loop_flush_on_their_own_after_the_interval() -> None:
    registry, counter, _ = _pair()
    tally = Tally(flush_s=0.05)

    async def main() -> tuple[float | None, float | None]:
        tally.inc(counter.labels("a"), 3)
        tally.inc(counter.labels("a"), 4)
        before = registry.get_sample_value("c_total", {"k": "a"})
        await asyncio.sleep(0.2)
        return before, registry.get_sample_value("c_total", {"k": "a"})

    before, after = asyncio.run(main())
    assert before == 0.0
    assert after == 7.0


def test_without_a_loop_pending_updates_stay_bounded() -> None:
    registry, counter, histogram = _pair()
    tally = Tally(max_pending=100)
    for _ in range(130):  # 260 updates: inline flushes at the 100th and the 200th
        tally.inc(counter.labels("a"))
        tally.observe(histogram.labels("a"), 0.001)
    assert registry.get_sample_value("c_total", {"k": "a"}) == 100.0
    assert registry.get_sample_value("h_count", {"k": "a"}) == 100.0
    tally.flush()
    assert registry.get_sample_value("c_total", {"k": "a"}) == 130.0
    assert registry.get_sample_value("h_count", {"k": "a"}) == 130.0


def test_a_bad_amount_never_makes_a_flush_lose_the_others():
    from prometheus_client import CollectorRegistry, Counter

    from rung.router.tally import Tally

    registry = CollectorRegistry()
    counter = Counter("x", "x", ["k"], registry=registry)
    tally = Tally()
    tally.inc(counter.labels("a"), 2)
    tally.inc(counter.labels("b"), -1_000_000)  # usage a backend lied about
    tally.inc(counter.labels("c"), float("inf"))
    tally.flush()
    assert registry.get_sample_value("x_total", {"k": "a"}) == 2
    assert registry.get_sample_value("x_total", {"k": "b"}) == 0
    assert registry.get_sample_value("x_total", {"k": "c"}) == 0

"""Kept usage records: packed flat (half the memory, invisible to the collector's full passes),
read back exactly as the record's own dict."""

from __future__ import annotations

import asyncio
import gc

from rung.tenants.usage import MemoryUsage, UsageRecord, pack, unpack


def record(tenant: str = "acme", at: float = 100.0, **extra: object) -> UsageRecord:
    tiers, models = ["small", "large"], ["m1", "m2"]
    return UsageRecord(tenant, at, tiers, models, 12, 30, 123, 999, "miss", "small>large", 1.5,
                       200, "large", "2026-12-02", "2026-12", dict(extra))  # fmt: skip


def test_a_packed_record_reads_back_as_its_dict() -> None:
    for kept in (record(), record(adapter="legal", shadow=True)):
        assert unpack(pack(kept)) == kept.to_dict()


def test_a_packed_record_is_not_tracked_by_the_collector() -> None:
    packed = pack(record())
    # A pass untracks a tuple whose items are untracked already: the inner tuples in the
    # first, the record in the next (a serving process collects all the time).
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(packed)
    assert gc.is_tracked(record())  # the dataclass it replaces is


def test_memory_usage_keeps_the_newest_records_per_tenant_and_period() -> None:
    async def run() -> tuple[list[dict[str, object]], list[dict[str, object]], dict[str, int]]:
        usage = MemoryUsage(3)
        for i in range(5):
            await usage.append(record("acme" if i % 2 == 0 else "other", float(i)))
        acme = await usage.records("acme", 0.0)
        late = await usage.records("acme", 3.0)
        return acme, late, await usage.sums("acme", "2026-12")

    acme, late, sums = asyncio.run(run())
    assert [r["time"] for r in acme] == [2.0, 4.0]  # the bound dropped the oldest (t=0)
    assert [r["time"] for r in late] == [4.0]
    assert acme[0]["tiers"] == ["small", "large"]
    assert sums["large:requests"] == 3  # sums count every record, kept or not

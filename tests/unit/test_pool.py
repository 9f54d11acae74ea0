"""Replica selection and health bookkeeping, without network (clients are never started)."""

from __future__ import annotations

from rung.backends.pool import TierPool
from rung.config import HealthSettings, TierConfig
from rung.errors import BackendError, BackendRejected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pool(replicas: int, clock: Clock, threshold: int = 1) -> TierPool:
    tier = TierConfig.model_validate(
        {
            "name": "t",
            "model": "m",
            "price": {"input_per_mtok": 1, "output_per_mtok": 1},
            "backends": [{"url": f"http://127.0.0.1:{9000 + i}/v1"} for i in range(replicas)],
        }
    )
    return TierPool(tier, HealthSettings(failure_threshold=threshold, cooldown_s=10), clock)


def test_least_outstanding_replica_comes_first():
    p = pool(3, Clock())
    p.replicas[0].outstanding, p.replicas[1].outstanding, p.replicas[2].outstanding = 5, 1, 3
    assert [r.label for r in p.candidates()] == ["t[1]", "t[2]", "t[0]"]


def test_ties_rotate_so_idle_replicas_share_the_load():
    p = pool(3, Clock())
    firsts = [p.candidates()[0].label for _ in range(6)]
    assert sorted(firsts) == ["t[0]", "t[0]", "t[1]", "t[1]", "t[2]", "t[2]"]


def test_open_replicas_are_skipped_until_their_cooldown_ends():
    clock = Clock()
    p = pool(2, clock)
    p._record(p.replicas[0], BackendError("boom"))
    assert [r.label for r in p.candidates()] == ["t[1]"]
    assert p.available()
    p._record(p.replicas[1], BackendError("boom"))
    assert p.candidates() == []
    assert not p.available()
    clock.now = 10
    assert len(p.candidates()) == 2


def test_a_4xx_is_the_request_s_fault_not_the_replica_s():
    p = pool(1, Clock())
    p._record(p.replicas[0], BackendRejected(400, {"error": {"message": "too long"}}))
    assert p.replicas[0].breaker.failures == 0
    assert p.available()


def test_ready_needs_a_reachable_replica_in_rotation():
    p = pool(2, Clock())
    assert p.ready()
    p.replicas[0].reachable = False
    assert p.ready()
    p.replicas[1].reachable = False
    assert not p.ready()


async def test_a_busy_replica_that_misses_a_probe_stays_in_rotation():
    """llama.cpp answers no probe while it generates: our own calls in flight judge it."""
    p = pool(2, Clock())

    async def silent(timeout_s: float) -> bool:
        return False

    for replica in p.replicas:
        replica.client.probe = silent  # type: ignore[method-assign]
    p.replicas[0].outstanding = 1  # busy with one of our calls
    await p.probe()
    assert [r.breaker.is_open for r in p.replicas] == [False, True]
    assert [r.label for r in p.candidates()] == ["t[0]"]

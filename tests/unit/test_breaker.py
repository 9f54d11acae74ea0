from __future__ import annotations

from rung.backends.breaker import Breaker


def test_opens_after_threshold_failures_and_half_opens_after_cooldown():
    breaker = Breaker(threshold=2, cooldown_s=10)
    breaker.record_failure(now=0)
    assert breaker.allows(0)
    assert not breaker.is_open
    breaker.record_failure(now=1)
    assert breaker.is_open
    assert not breaker.allows(10.9)
    assert breaker.allows(11)  # half-open: a trial call may go


def test_a_failed_trial_reopens_at_once_and_a_success_closes():
    breaker = Breaker(threshold=3, cooldown_s=5)
    for t in range(3):
        breaker.record_failure(now=t)
    assert breaker.allows(7)
    breaker.record_failure(now=7)
    assert not breaker.allows(11.9)
    assert breaker.allows(12)
    breaker.record_success()
    assert not breaker.is_open
    assert breaker.failures == 0


def test_success_resets_the_count():
    breaker = Breaker(threshold=2, cooldown_s=5)
    breaker.record_failure(now=0)
    breaker.record_success()
    breaker.record_failure(now=1)
    assert not breaker.is_open


def test_trip_opens_immediately():
    breaker = Breaker(threshold=5, cooldown_s=5)
    breaker.trip(now=0)
    assert not breaker.allows(4.9)
    assert breaker.allows(5)

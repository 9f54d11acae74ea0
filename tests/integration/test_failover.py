"""Failover between replicas, circuit breakers, health probes and tier fallback, against real
fake servers over loopback."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from rung.backends.fake_server import Behavior
from tests.integration.harness import client, drain, make_config, tier, wait_until

ASK = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("mode", ["error", "drop", "garbage"])
def test_a_failing_replica_is_skipped_and_taken_out_of_rotation(fake, gateway, mode):
    bad, good = fake("a", "m"), fake("b", "m")
    bad.behavior = Behavior(mode=mode, status=503)
    gw = gateway(make_config([tier("small", bad, good)], health={"cooldown_s": 60}))
    sdk = client(gw)
    for _ in range(4):
        raw = sdk.chat.completions.with_raw_response.create(model="rung", messages=ASK)
        assert raw.parse().choices[0].message.content == "[b] You said: hi"
        assert raw.headers["x-rung-tier"] == "small"
    # threshold 1: after its first failure the bad replica is out for the cooldown.
    assert bad.stats.requests <= 1
    assert good.stats.completed == 4
    replicas = httpx.get(gw.url + "/readyz").json()["tiers"][0]["replicas"]
    assert [r["in_rotation"] for r in replicas] == [bad.stats.requests == 0, True]


def test_a_silent_replica_times_out_and_the_other_answers(fake, gateway):
    slow, fast = fake("slow", "m"), fake("fast", "m")
    slow.behavior = Behavior(delay_s=5)
    gw = gateway(make_config([tier("small", slow, fast, read_timeout_s=0.3)]))
    sdk = client(gw)
    started = time.monotonic()
    answers = [sdk.chat.completions.create(model="rung", messages=ASK) for _ in range(3)]
    assert all(a.choices[0].message.content == "[fast] You said: hi" for a in answers)
    assert time.monotonic() - started < 3
    assert slow.stats.requests == 1


@pytest.mark.parametrize("mode", ["error", "drop", "garbage"])
def test_streams_fail_over_before_the_first_byte(fake, gateway, mode):
    bad, good = fake("a", "m"), fake("b", "m")
    bad.behavior = Behavior(mode=mode, status=500)
    good.behavior.reply = "streamed fine"
    gw = gateway(make_config([tier("small", bad, good)]))
    for _ in range(2):
        stream = client(gw).chat.completions.create(model="rung", messages=ASK, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "streamed fine"
    assert good.stats.streams_finished == 2


def test_a_stream_that_breaks_midway_ends_with_an_error_event(fake, gateway):
    only = fake("a", "m")
    only.behavior = Behavior(mode="drop_mid_stream", reply="w1 w2 w3 w4 w5 w6")
    gw = gateway(make_config([tier("small", only)]))
    received: list[str] = []
    stream = client(gw).chat.completions.create(model="rung", messages=ASK, stream=True)
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        drain(stream, received)
    assert "".join(received) == "w1 w2 w3"


def test_load_spreads_over_replicas_by_outstanding_requests(fake, gateway):
    a, b = fake("a", "m"), fake("b", "m")
    a.behavior.delay_s = b.behavior.delay_s = 0.2
    gw = gateway(make_config([tier("small", a, b)]))
    sdk = client(gw)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: sdk.chat.completions.create(model="rung", messages=ASK), range(16)))
    assert a.stats.completed + b.stats.completed == 16
    assert 6 <= a.stats.completed <= 10


def test_a_down_replica_returns_after_the_probe_sees_it_again(fake, gateway, loop_thread):
    a, b = fake("a", "m"), fake("b", "m")
    gw = gateway(make_config([tier("small", a, b)]))
    port = a.port
    loop_thread.run(a.stop())
    ready = lambda: httpx.get(gw.url + "/readyz").json()["tiers"][0]["replicas"]  # noqa: E731
    wait_until(lambda: ready()[0]["in_rotation"] is False, what="replica a out of rotation")
    sdk = client(gw)
    assert (
        sdk.chat.completions.create(model="rung", messages=ASK).choices[0].message.content
        == "[b] You said: hi"
    )
    loop_thread.run(a.start(port=port))
    wait_until(lambda: ready()[0]["in_rotation"] is True, what="replica a back in rotation")
    for _ in range(6):
        sdk.chat.completions.create(model="rung", messages=ASK)
    assert a.stats.completed >= 2


def test_a_whole_tier_down_falls_back_to_the_next_tier_up(fake, gateway, loop_thread):
    small, large = fake("small"), fake("large")
    small.behavior = Behavior(mode="error", status=502)
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    raw = client(gw).chat.completions.with_raw_response.create(model="rung", messages=ASK)
    assert raw.parse().choices[0].message.content == "[large] You said: hi"
    assert raw.headers["x-rung-tier"] == "large"
    assert raw.headers["x-rung-route-reason"] == "length 2<=100"
    assert raw.headers["x-rung-fallback"] == "small: backend_error; answered by large"
    # The tier is now out of rotation: the next request skips it without calling it.
    raw = client(gw).chat.completions.with_raw_response.create(model="rung", messages=ASK)
    assert raw.headers["x-rung-fallback"] == "small: unavailable; answered by large"
    assert small.stats.requests == 1


@pytest.mark.parametrize("mode", ["error", "drop", "garbage"])
def test_a_pinned_tier_never_falls_back_to_another_tier(fake, gateway, mode):
    small, large = fake("small"), fake("large")
    small.behavior = Behavior(mode=mode, status=500)
    gw = gateway(make_config([tier("small", small), tier("large", large)]))
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "small", "messages": ASK})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "backend_error"
    assert "127.0.0.1" not in error["message"]  # backend addresses stay internal
    assert large.stats.requests == 0


def test_every_backend_timing_out_is_a_504(fake, gateway):
    a = fake("a")
    a.behavior = Behavior(delay_s=3)
    gw = gateway(make_config([tier("small", a, read_timeout_s=0.2)]))
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "rung", "messages": ASK})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "backend_timeout"


def test_the_request_deadline_bounds_failover(fake, gateway):
    a, b = fake("a", "m"), fake("b", "m")
    a.behavior = b.behavior = Behavior(delay_s=3)
    gw = gateway(make_config([tier("small", a, b)], server={"request_timeout_s": 0.5}))
    started = time.monotonic()
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "rung", "messages": ASK})
    assert response.status_code == 504
    assert time.monotonic() - started < 2


def test_no_backend_at_all_is_a_503(fake, gateway, loop_thread):
    a = fake("a")
    gw = gateway(make_config([tier("small", a)]))
    loop_thread.run(a.stop())
    wait_until(lambda: httpx.get(gw.url + "/readyz").status_code == 503, what="not ready")
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "rung", "messages": ASK})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_backend_available"


def test_a_backend_4xx_is_passed_through_and_not_retried(fake, gateway):
    a, b = fake("a", "m"), fake("b", "m")
    a.behavior = b.behavior = Behavior(mode="error", status=400)
    gw = gateway(make_config([tier("small", a, b)]))
    with pytest.raises(openai.BadRequestError, match="fake 400"):
        client(gw).chat.completions.create(model="rung", messages=ASK)
    assert a.stats.requests + b.stats.requests == 1


def test_an_oversized_backend_body_is_refused_not_buffered(fake, gateway, monkeypatch):
    import rung.backends.client as client_module

    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 2048)
    a = fake("a")
    a.behavior.reply = "word " * 1000
    gw = gateway(make_config([tier("small", a)]))
    response = httpx.post(gw.url + "/v1/chat/completions", json={"model": "rung", "messages": ASK})
    assert response.status_code == 502
    a.behavior.reply = "short"
    gw2 = gateway(make_config([tier("small", a)]))
    ok = httpx.post(gw2.url + "/v1/chat/completions", json={"model": "rung", "messages": ASK})
    assert ok.status_code == 200


def test_a_vllm_replica_that_reports_a_queue_is_avoided_and_counts_as_load(
    fake, gateway, loop_thread
):
    """vLLM's own gauges (read at each probe) show load other clients put on a replica, which
    this gateway's count of its own requests cannot see."""
    busy, free = fake("busy", "m"), fake("free", "m")
    busy.behavior.gauges = (6.0, 0.97)  # another client's requests queue there
    free.behavior.gauges = (0.0, 0.10)
    gw = gateway(make_config([tier("small", busy, free)]))
    replicas = lambda: httpx.get(gw.url + "/readyz").json()["tiers"][0]["replicas"]  # noqa: E731
    wait_until(lambda: replicas()[0].get("server_waiting") == 6.0, what="the gauges read")
    sdk = client(gw)
    for _ in range(6):
        sdk.chat.completions.create(model="rung", messages=ASK)
    assert (busy.stats.requests, free.stats.completed) == (0, 6)
    pool = gw.app.state.runtime.pools[0]
    assert pool.load() == pytest.approx((1.0 + 0.10) / 2)  # busy's queue: full; free: its cache
    assert replicas()[1]["server_kv_cache"] == 0.1

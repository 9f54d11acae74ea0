"""Shadow checks through the gateway: sampled routed answers are checked against the reference
tier in the background, the estimate reaches /admin/usage and /metrics, opted-out tenants and
pinned requests are never sampled, and nothing is written without `shadow.record`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from rung.backends.fake_server import Behavior
from rung.config import load_config
from rung.tenants.keys import hash_key
from tests.integration.harness import client, make_config, tier, wait_until
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.integration
ACME, SHY, ADMIN = "acme-key-0123456789ab", "shy-key-0123456789abc", "admin-key-0123456789"


def agreeing(fake: Any) -> tuple[Any, Any]:
    """Two fake tiers whose answers agree (both say 4)."""
    small, large = fake("small"), fake("large")
    small.behavior = Behavior(reply="The answer is 4.")
    large.behavior = Behavior(reply="4")
    return small, large


def setup(fake: Any, gateway: Any, tmp_path: Path, **shadow: Any) -> tuple[Any, Any, Any]:
    small, large = agreeing(fake)
    gw = gateway(
        make_config(
            [tier("small", small), tier("large", large)],
            server={"admin_key": ADMIN},
            shadow={"rate": 1.0, "record": str(tmp_path / "shadow.jsonl"), **shadow},
            tenants=[
                {"name": "acme", "keys": [hash_key(ACME)], "policy": {"goal": {"keep": 0.9}}},
                {"name": "shy", "keys": [hash_key(SHY)], "policy": {"shadow": False}},
            ],
        )
    )
    return small, large, gw


def usage(gw: Any, tenant: str) -> Any:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.get(
        f"{gw.url}/admin/usage", params={"tenant": tenant}, headers=headers, timeout=5
    ).json()


def ask(gw: Any, key: str, text: str, model: str = "rung") -> None:
    sdk = client(gw, api_key=key)
    sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def test_checks_agreement_and_privacy(fake: Any, gateway: Any, tmp_path: Path) -> None:
    small, large, gw = setup(fake, gateway, tmp_path)
    for i in range(6):
        ask(gw, ACME, f"What is 2+2? ({i})")
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 6,
               what="six checks")  # fmt: skip
    small.behavior = Behavior(reply="The answer is 5.")  # now wrong
    for i in range(4):
        ask(gw, ACME, f"What is 2+2? again ({i})")
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 10,
               what="ten checks")  # fmt: skip
    estimate = usage(gw, "acme")["shadow"]
    small_view = estimate["tiers"]["small"]
    assert small_view["agreement"] == 0.6
    low, high = small_view["ci95"]
    assert 0.3 < low < 0.6 < high < 0.9
    assert estimate["keeps"] == 0.6  # every routed answer came from small
    assert large.stats.requests == 10  # the reference calls, and nothing else

    ask(gw, SHY, "What is 2+2?")  # opted out: served, never sampled
    ask(gw, ACME, "What is 3+3?", model="small")  # pinned: not a routing decision
    wait_until(lambda: usage(gw, "shy")["today"]["requests"] == 1, what="shy served")
    assert large.stats.requests == 10
    shy = usage(gw, "shy")["shadow"]
    assert shy["tiers"]["small"]["sampled"] == 0
    assert shy["keeps"] is None  # nothing checked: no estimate

    m = scrape(gw.url, ADMIN)
    assert value(m, "rung_shadow_keeps", tenant="acme") == 0.6
    assert value(m, "rung_shadow_goal_keep", tenant="acme") == 0.9
    assert value(m, "rung_shadow_keeps_lower", tenant="acme") < 0.9  # the alert would fire
    # The checks are counted too, so agreement can be pooled over workers and replicas.
    checks = "rung_shadow_checks_total"
    assert value(m, checks, tenant="acme", tier="small", agreed="yes") == 6
    assert value(m, checks, tenant="acme", tier="small", agreed="no") == 4
    assert value(m, checks, tenant="shy") == 0
    lines = [orjson.loads(x) for x in (tmp_path / "shadow.jsonl").read_bytes().splitlines()]
    assert len(lines) == 10
    # keyed by each tier's model, as `rung label` and the ladders key outcomes
    assert sum(line["results"]["small-model"]["score"] for line in lines) == 6
    assert all(line["results"]["large-model"]["score"] == 1.0 for line in lines)
    assert {line["source"] for line in lines} == {"shadow"}
    assert all(line["tiers"] == {"answered": "small", "reference": "large"} for line in lines)
    assert all("prompt" not in line and "answer" not in line for line in lines)  # scores only
    assert all("id" not in line for line in lines)  # not even a digest of the prompt
    assert b"2+2" not in (tmp_path / "shadow.jsonl").read_bytes()


def test_record_text_keeps_prompts_only_when_asked(fake: Any, gateway: Any, tmp_path: Path) -> None:
    _, large, gw = setup(fake, gateway, tmp_path, record_text=True, max_calls_per_day=2)
    for i in range(4):
        ask(gw, ACME, f"What is 2+2? ({i})")
    wait_until(lambda: usage(gw, "acme")["shadow"]["skipped"].get("daily_limit") == 2,
               what="the daily limit")  # fmt: skip
    lines = [orjson.loads(x) for x in (tmp_path / "shadow.jsonl").read_bytes().splitlines()]
    assert len(lines) == 2
    assert lines[0]["prompt"].startswith("What is 2+2?")
    assert lines[0]["reference"] == "4"
    assert lines[0]["id"].startswith("shadow/")  # a training row: `rung learn` reads these
    # each answer's text beside its score, as `rung train` fits the answer verifier on it
    assert sorted(r["text"] for r in lines[0]["results"].values())[0] == "4"
    assert large.stats.requests == 2


def test_exploration_asks_the_smallest_tier_about_the_references_own_answers(
    fake: Any, gateway: Any, tmp_path: Path
) -> None:
    small, large = agreeing(fake)
    record = tmp_path / "shadow.jsonl"
    gw = gateway(
        make_config(
            [tier("small", small), tier("large", large)],
            server={"admin_key": ADMIN},
            routing={"policy": "length", "length_thresholds": [10]},  # all routed to large
            shadow={
                "rate": 1.0,
                "explore_rate": 1.0,
                "record": str(record),
                "record_text": True,
            },
        )
    )
    for i in range(3):
        ask(gw, ADMIN, f"What is 2+2? Long enough for the large tier ({i})")
    wait_until(lambda: record.exists() and len(record.read_bytes().splitlines()) == 3,
               what="three explorations")  # fmt: skip
    lines = [orjson.loads(x) for x in record.read_bytes().splitlines()]
    assert {line["source"] for line in lines} == {"explore"}
    assert all(line["tiers"] == {"answered": "small", "reference": "large"} for line in lines)
    assert all(line["results"]["small-model"]["score"] == 1.0 for line in lines)  # 4 == 4
    assert all(line["reference"] == "4" for line in lines)  # the answer served
    assert small.stats.requests == 3  # asked in the background
    assert large.stats.requests == 3  # served; never asked again
    # the estimate is about served answers: nothing of large's needed checking
    assert usage(gw, "default")["shadow"]["tiers"]["large"]["sampled"] == 0


def test_without_a_record_file_nothing_is_explored(fake: Any, gateway: Any, tmp_path: Path) -> None:
    small, large = fake("small"), fake("large")
    gw = gateway(
        make_config(
            [tier("small", small), tier("large", large)],
            routing={"policy": "length", "length_thresholds": [10]},
            shadow={"rate": 1.0, "explore_rate": 1.0},
        )
    )
    for i in range(3):
        ask(gw, "any", f"What is 2+2? Long enough for the large tier ({i})")
    time.sleep(0.3)
    assert small.stats.requests == 0  # it would teach nothing: no cost spent


def routed(gw: Any, key: str, text: str) -> Any:
    sdk = client(gw, api_key=key)
    return sdk.chat.completions.with_raw_response.create(
        model="rung", messages=[{"role": "user", "content": text}]
    )


def test_the_guard_holds_back_a_tier_that_breaks_the_goal_then_lets_it_try_again(
    fake: Any, gateway: Any, tmp_path: Path
) -> None:
    # small answers every question wrong: what routing keeps is far below acme's keep 0.9
    small, _, gw = setup(fake, gateway, tmp_path, guard_min_checks=5, guard_hold_s=1.5)
    small.behavior = Behavior(reply="The answer is 5.")
    for i in range(5):
        assert routed(gw, ACME, f"What is 2+2? ({i})").headers["x-rung-tier"] == "small"
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 5,
               what="five checks")  # fmt: skip
    held = routed(gw, ACME, "What is 2+2? (held)")
    assert held.headers["x-rung-tier"] == "large"
    assert held.headers["x-rung-route-reason"].endswith("; shadow guard holds back small")
    assert usage(gw, "acme")["shadow"]["held_back"] == ["small"]
    m = scrape(gw.url, ADMIN)
    assert value(m, "rung_shadow_held_back", tenant="acme", tier="small") == 1.0
    # What routing keeps now leaves the held tier out: only large serves acme's routed
    # requests (it used to read 1/6 from small's earlier answers, and the alert kept firing).
    view = usage(gw, "acme")["shadow"]
    assert view["keeps"] == 1.0
    assert view["tiers"]["small"]["served"] == 5
    assert value(m, "rung_shadow_keeps_lower", tenant="acme") == 1.0
    # another tenant's routing is its own: shy has no evidence against small
    assert routed(gw, SHY, "What is 2+2? (shy)").headers["x-rung-tier"] == "small"
    # a pinned request is a promise, never redirected
    pinned = client(gw, api_key=ACME).chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": "What is 2+2? (pinned)"}]
    )
    assert pinned.headers["x-rung-tier"] == "small"

    time.sleep(1.6)  # the hold ends: small serves again, judged on fresh evidence
    again = routed(gw, ACME, "What is 2+2? (after)")
    assert again.headers["x-rung-tier"] == "small"
    assert "shadow guard" not in again.headers["x-rung-route-reason"]
    view = usage(gw, "acme")["shadow"]
    assert view["held_back"] == []
    assert view["tiers"]["small"]["served"] == 1  # its tally started afresh


def test_the_guard_stays_out_of_the_way_when_off_or_when_the_goal_is_kept(
    fake: Any, gateway: Any, tmp_path: Path
) -> None:
    small, _, gw = setup(fake, gateway, tmp_path, guard=False, guard_min_checks=5)
    small.behavior = Behavior(reply="The answer is 5.")
    for i in range(6):
        routed(gw, ACME, f"What is 2+2? ({i})")
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 6,
               what="six checks")  # fmt: skip
    assert routed(gw, ACME, "What is 2+2? (7)").headers["x-rung-tier"] == "small"
    assert usage(gw, "acme")["shadow"]["held_back"] == []

    _, _, kept = setup(fake, gateway, tmp_path, guard_min_checks=5)  # small agrees: "4"
    for i in range(6):
        routed(kept, ACME, f"What is 2+2? ({i})")
    wait_until(lambda: usage(kept, "acme")["shadow"]["tiers"]["small"]["sampled"] == 6,
               what="six checks")  # fmt: skip
    assert routed(kept, ACME, "What is 2+2? (7)").headers["x-rung-tier"] == "small"


def test_the_check_counter_survives_a_reload_that_starts_the_tallies_afresh(
    fake: Any, gateway: Any, tmp_path: Path
) -> None:
    small, large = agreeing(fake)
    path = tmp_path / "rung.yaml"

    def write(max_calls: int) -> None:
        data = {
            "server": {"admin_key": ADMIN, "request_timeout_s": 10},
            "routing": {"policy": "length", "length_thresholds": [100]},
            "cache": {"enabled": False},
            "shadow": {"rate": 1.0, "max_calls_per_day": max_calls},
            "tiers": [tier("small", small), tier("large", large)],
            "tenants": [{"name": "acme", "keys": [hash_key(ACME)]}],
        }
        path.write_text(yaml.safe_dump(data))

    write(1000)
    gw = gateway(load_config(path), path)
    for i in range(3):
        ask(gw, ACME, f"What is 2+2? ({i})")
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 3,
               what="three checks")  # fmt: skip
    write(999)  # other shadow settings: a fresh Shadow, its tallies start again
    reloaded = httpx.post(f"{gw.url}/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    assert reloaded.json() == {"reloaded": True}
    small.behavior = Behavior(reply="The answer is 5.")
    for i in range(2):
        ask(gw, ACME, f"What is 2+2? again ({i})")
    # The estimate restarted with the new settings ...
    wait_until(lambda: usage(gw, "acme")["shadow"]["tiers"]["small"]["sampled"] == 2,
               what="two checks after the reload")  # fmt: skip
    m = scrape(gw.url, ADMIN)
    checks = "rung_shadow_checks_total"
    assert value(m, checks, tenant="acme", tier="small", agreed="yes") == 3  # ... the counter not
    assert value(m, checks, tenant="acme", tier="small", agreed="no") == 2


def test_workers_sharing_a_redis_pool_their_checks_and_holds(
    fake: Any, gateway: Any, tmp_path: Path, redis_url: str
) -> None:
    """Two gateways (two workers, or two replicas) on one Redis: neither has the 6 checks the
    guard needs, together they have; the hold one starts reaches the other at its next check,
    and when it ends the pooled evidence starts afresh for both."""
    small, large = agreeing(fake)
    small.behavior = Behavior(reply="The answer is 5.")  # always wrong
    config = make_config(
        [tier("small", small), tier("large", large)],
        server={"admin_key": ADMIN},
        shadow={"rate": 1.0, "guard_min_checks": 6, "guard_hold_s": 2.0},
        limits={"store": "redis", "redis_url": redis_url},
        tenants=[{"name": "acme", "keys": [hash_key(ACME)], "policy": {"goal": {"keep": 0.9}}}],
    )
    one, two = gateway(config), gateway(config)

    def small_view(gw: Any) -> Any:
        return usage(gw, "acme")["shadow"]["tiers"].get("small", {})

    for i in range(3):
        assert routed(one, ACME, f"What is 2+2? ({i})").headers["x-rung-tier"] == "small"
    wait_until(lambda: small_view(one).get("sampled") == 3, what="three checks on one")
    for i in range(3):
        assert routed(two, ACME, f"What is 3+3? ({i})").headers["x-rung-tier"] == "small"
    # two's view is the pool: its own 3 checks and one's 3 (alone, 3 < 6 holds nothing)
    wait_until(lambda: small_view(two).get("sampled") == 6, what="six pooled checks")
    assert small_view(two)["served"] == 6
    held = routed(two, ACME, "What is 3+3? (held)")
    assert held.headers["x-rung-tier"] == "large"
    assert held.headers["x-rung-route-reason"].endswith("; shadow guard holds back small")
    # one has not looked since; its next check brings the hold
    assert routed(one, ACME, "What is 2+2? (3)").headers["x-rung-tier"] == "small"
    wait_until(lambda: usage(one, "acme")["shadow"]["held_back"] == ["small"],
               what="the hold reaching one")  # fmt: skip
    assert routed(one, ACME, "What is 2+2? (4)").headers["x-rung-tier"] == "large"

    time.sleep(2.1)  # the hold ends: small serves again on both, judged on fresh evidence
    assert routed(one, ACME, "What is 2+2? (after)").headers["x-rung-tier"] == "small"
    wait_until(lambda: small_view(one).get("sampled") == 1, what="a fresh pooled tally")
    assert small_view(one)["served"] == 1
    assert routed(two, ACME, "What is 3+3? (after)").headers["x-rung-tier"] == "small"
    wait_until(lambda: small_view(two).get("sampled") == 2, what="both fresh checks pooled")
    assert usage(two, "acme")["shadow"]["held_back"] == []


def test_a_redis_outage_loses_no_shadow_evidence(
    fake: Any, gateway: Any, tmp_path: Path, redis_server: Any
) -> None:
    """Checks made while the shared store is down count in the worker's own view and reach
    the store with the next check after it is back."""
    small, large = agreeing(fake)
    gw = gateway(
        make_config(
            [tier("small", small), tier("large", large)],
            server={"admin_key": ADMIN},
            shadow={"rate": 1.0},
            limits={"store": "redis", "redis_url": redis_server.url},
            tenants=[{"name": "acme", "keys": [hash_key(ACME)]}],
        )
    )

    def shadow() -> Any:
        return usage(gw, "acme")["shadow"]

    ask(gw, ACME, "What is 2+2? (0)")
    wait_until(lambda: shadow()["tiers"]["small"]["sampled"] == 1, what="one check")
    redis_server.stop()
    for i in range(2):
        ask(gw, ACME, f"What is 2+2? (down {i})")
    # /admin/usage reads the usage store, down too: look at the worker's shadow directly
    live = gw.app.state.runtime.pipeline.shadow
    wait_until(lambda: live.skipped.get("store_failed") == 2, what="two failed turns")
    assert live.tallies["acme"]["small"].sampled == 3  # this worker's own view goes on
    redis_server.start()  # the same port, empty: the first check's turn went with it
    ask(gw, ACME, "What is 2+2? (back)")
    # the two checks made during the outage and this one, all in one turn
    wait_until(lambda: _stored(redis_server.url) == {"sampled": 3, "agreed": 3, "served": 3},
               what="the store holding the turns")  # fmt: skip
    assert shadow()["tiers"]["small"]["sampled"] == 3  # the pooled view (its own said 4)


def _stored(url: str) -> dict[str, int]:
    import redis

    raw = redis.Redis.from_url(url).hgetall("rung:shadow:acme")
    return {k.decode().rpartition(":")[2]: int(v) for k, v in raw.items()}

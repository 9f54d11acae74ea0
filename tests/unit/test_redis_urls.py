"""Redis URLs in the config (issue 32): the cluster form, hash tags only on a cluster, and
errors that never echo a password. The scripts themselves run on a real cluster in
tests/integration/test_redis_cluster.py and the store suites (a key outside the script's slot
fails there with CROSSSLOT)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from rung.cache.redis_store import Layout
from rung.config import parse_config
from rung.errors import ConfigError
from rung.redisconn import tagger
from rung.resp import Address
from rung.resp_cluster import is_cluster, parse_cluster_url
from rung.tenants.redis_counters import ledger_keys

CLUSTER = "redis+cluster://127.0.0.1:7001,127.0.0.1:7002"
SINGLE = "redis://127.0.0.1:6379/0"


def test_a_cluster_url_lists_its_seeds_with_the_urls_credentials() -> None:
    seeds = parse_cluster_url("rediss+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001/0")
    assert seeds == [
        Address("10.0.0.1", 7000, None, True, "app", "p@ss", 0),
        Address("::1", 7001, None, True, "app", "p@ss", 0),
    ]
    plain = parse_cluster_url("redis+cluster://:secret@h:1")
    assert plain == [Address("h", 1, None, False, None, "secret", 0)]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://h:1", "not a Redis Cluster URL"),
        ("redis+cluster://h", "host:port pairs"),
        ("redis+cluster://h:1,h:x", "host:port pairs"),
    ],
)
def test_a_malformed_cluster_url_says_what_form_is_expected(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cluster_url(url)


def test_keys_are_tagged_by_tenant_on_a_cluster_and_unchanged_on_one_redis() -> None:
    assert is_cluster(CLUSTER)
    assert is_cluster("rediss+cluster://h:1")
    assert not is_cluster(SINGLE)
    assert not is_cluster("unix:///tmp/redis.sock")
    assert tagger(SINGLE)("acme") == "acme"  # the names single Redis always had
    assert ledger_keys(tagger(SINGLE)("acme"), "2026-12-06", "2026-12")[0] == (
        "rung:ledger:acme:2026-12-06"
    )
    for tenant in ("acme", "bob", "team.a-1"):
        keys = ledger_keys(tagger(CLUSTER)(tenant), "2026-12-06", "2026-12")
        layout = Layout(CLUSTER)
        keys += [layout.entry(tenant, "k1"), layout.keys_of(tenant), layout.bytes_of(tenant)]
        assert len({key_slot(k.encode()) for k in keys}) == 1, tenant  # one script, one slot
        assert layout.tenant_of(layout.keys_of(tenant)) == tenant
    slots = {key_slot(tagger(CLUSTER)(t).encode()) for t in ("acme", "bob", "carol", "dave")}
    assert len(slots) > 1  # tenants spread over the cluster, not all on one shard


def _config(limits: dict[str, object], cache: dict[str, object] | None = None) -> None:
    tier = {
        "name": "small",
        "model": "m",
        "price": {"input_per_mtok": 1, "output_per_mtok": 1},
        "backends": [{"url": "http://127.0.0.1:9/v1"}],
    }
    parse_config({"tiers": [tier], "limits": limits, "cache": cache or {}}, "<test>")


def test_the_config_takes_every_url_form_and_refuses_others_without_echoing_them() -> None:
    for url in (SINGLE, CLUSTER, "rediss+cluster://:pw@h:1", "unix:///run/redis.sock?db=2"):
        _config({"store": "redis", "redis_url": url}, {"store": "redis", "redis_url": url})
    for section in ("limits", "cache"):
        bad = {"store": "redis", "redis_url": "redis+cluster://user:hunter2@h"}
        with pytest.raises(ConfigError) as caught:
            _config(bad if section == "limits" else {}, bad if section == "cache" else None)
        text = str(caught.value)
        assert f"{section}.redis_url" in text
        assert "host:port pairs" in text
        assert "hunter2" not in text
    with pytest.raises(ConfigError, match="not a Redis URL") as caught:
        _config({"store": "redis", "redis_url": "http://u:hunter2@h:1"})
    assert "hunter2" not in str(caught.value)


def test_the_masked_placeholder_is_named_as_such() -> None:
    """A config saved from /admin/config carries `**********` for every secret."""
    with pytest.raises(ConfigError, match="masked placeholder"):
        _config({"store": "redis", "redis_url": "**********"})

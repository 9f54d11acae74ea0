"""Hot reload: the new file is validated first; an invalid one leaves the old config serving;
removing a key locks it out at once; requests in flight finish; nothing is dropped."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rung.config import load_config
from tests.integration.harness import tier

pytestmark = pytest.mark.integration
ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"


def write(path: Path, small: Any, tenants: list[dict[str, Any]], **extra: Any) -> None:
    data = {
        "server": {"admin_key": ADMIN, "request_timeout_s": 10},
        "routing": {"policy": "length"},
        "cache": {"enabled": False},
        "tiers": [tier("small", small)],
        "tenants": tenants,
        **extra,
    }
    path.write_text(yaml.safe_dump(data))


def ask(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "rung", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def reload(url: str) -> httpx.Response:
    return httpx.post(f"{url}/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})


BOTH = [{"name": "alice", "keys": [ALICE]}, {"name": "bob", "keys": [BOB]}]


def test_invalid_reload_keeps_serving_and_a_removed_key_is_locked_out(fake, gateway, tmp_path):
    small = fake("small")
    path = tmp_path / "rung.yaml"
    write(path, small, BOTH)
    gw = gateway(load_config(path), path)
    assert ask(gw.url, BOB).status_code == 200
    path.write_text(path.read_text().replace("policy: length", "policy: lenght"))
    refused = reload(gw.url)
    assert refused.status_code == 400
    assert refused.json()["reloaded"] is False
    assert any("routing.policy" in e for e in refused.json()["errors"])
    assert ask(gw.url, BOB).status_code == 200  # the old config still serves
    write(path, small, BOTH[:1])  # bob's key removed
    assert reload(gw.url).json() == {"reloaded": True}
    locked = ask(gw.url, BOB)
    assert locked.status_code == 401
    assert ask(gw.url, ALICE).status_code == 200


def test_the_file_changing_reloads_by_itself(fake, gateway, tmp_path):
    small = fake("small")
    path = tmp_path / "rung.yaml"
    write(path, small, BOTH)
    gw = gateway(load_config(path), path)
    assert ask(gw.url, BOB).status_code == 200
    write(path, small, BOTH[:1])
    for _ in range(60):  # polled every 2 s
        if ask(gw.url, BOB).status_code == 401:
            break
        time.sleep(0.1)
    assert ask(gw.url, BOB).status_code == 401


def test_a_reload_under_load_drops_no_request(fake, gateway, tmp_path):
    small = fake("small")
    small.behavior.delay_s = 0.3
    path = tmp_path / "rung.yaml"
    write(path, small, BOTH)
    gw = gateway(load_config(path), path)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(ask, gw.url, ALICE) for _ in range(48)]
        time.sleep(0.2)
        for target in (0.2, 0.4, 0.6):  # three reloads while requests are in flight
            write(path, small, BOTH, defaults={"quality_target": target})
            assert reload(gw.url).json() == {"reloaded": True}
            time.sleep(0.1)
        codes = [f.result().status_code for f in futures]
    assert codes == [200] * 48
    assert small.stats.completed == 48


def test_a_served_heap_is_frozen_and_a_reload_lets_the_old_runtime_go(fake, gateway, tmp_path):
    """`rung serve` freezes its startup heap out of the collector's full passes
    (rung.router.heap), and refreezes after a reload. The retired runtime must still be freed:
    the app's lifespan kept the first one alive for good in a local variable."""
    import gc
    import weakref

    path = tmp_path / "rung.yaml"
    write(path, fake("small"), BOTH)
    try:
        gw = gateway(load_config(path), path, serving=True)
        assert gc.get_freeze_count() > 0
        old = weakref.ref(gw.app.state.runtime)
        write(path, fake("small"), BOTH[:1])
        assert reload(gw.url).json() == {"reloaded": True}
        assert ask(gw.url, ALICE).status_code == 200
        deadline = time.monotonic() + 10
        while old() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            gc.collect()
        assert old() is None, "the retired runtime is still alive"
        # Refrozen once the old one is retired: the new runtime has left the collected
        # generations (gc.get_objects lists those, not the frozen one).
        new = gw.app.state.runtime
        deadline = time.monotonic() + 10
        while any(o is new for o in gc.get_objects()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(o is new for o in gc.get_objects()), "the new runtime is not frozen"
    finally:
        gc.unfreeze()

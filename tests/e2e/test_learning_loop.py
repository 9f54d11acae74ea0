"""The learning loop on the real local ladder: a deliberately bad classifier serves a scripted
stream of prompts; shadow checks and explorations record both llama.cpp tiers' outcomes in the
background; `rung learn` fits a candidate on rung's own labels plus the older records, judges
both on the newest prompts neither was fitted on, promotes it and reloads the live gateway;
`rung promote` then refuses a deliberately worse candidate on the same prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pydantic import SecretStr

from rung.classifiers.model import load
from rung.config import RoutingConfig, ShadowConfig
from rung.weights.fetch import default_models_dir
from tests.integration.harness import client, wait_until, write_config
from tests.integration.test_promote import inverted

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-key-0123456789"


def script(n: int, seed: int = 7) -> list[str]:
    """Half one-step sums (the small tier manages), half two-step word problems (it often
    does not); new texts, never in rung's labels."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.integers(2, 60, 2)
            prompts.append(f"What is {a} + {b}? Answer with the number only.")
        else:
            a, b, c = rng.integers(12, 99, 3)
            prompts.append(
                f"A shop sells {a} boxes with {b} pens each and then {c} more pens arrive. "
                "How many pens are there in total? Answer with the number only."
            )
    return prompts


def rung(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CACHE_HOME": str(cache),
               "RUNG_MODELS_DIR": str(default_models_dir()), **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "rung", *args], capture_output=True, text=True,
                          timeout=600, env=environ, cwd=ROOT)  # fmt: skip


# 36 answers from two real tiers, then learn / promote / recalibrate as subprocesses: ~105 s on a
# quiet 2-core machine, past the suite's 120 s default on a busy one.
@pytest.mark.timeout(900)
def test_a_bad_classifier_is_replaced_through_the_loop(
    local_ladder: Any, gateway: Any, tmp_path: Path
) -> None:
    shipped = ROOT / "rung" / "classifiers" / "defaults" / "local"
    serving, worse = tmp_path / "serving", tmp_path / "worse"
    inverted(shipped, serving)
    inverted(shipped, worse)
    record = tmp_path / "shadow.jsonl"
    source = tmp_path / "rung.yaml"
    config = local_ladder.model_copy(
        update={
            "routing": RoutingConfig(policy="classifier", classifier=str(serving)),
            "shadow": ShadowConfig(
                rate=1.0, explore_rate=1.0, max_concurrency=1, record=str(record), record_text=True
            ),
            "cache": local_ladder.cache.model_copy(update={"enabled": False}),
            "server": local_ladder.server.model_copy(update={"admin_key": SecretStr(ADMIN)}),
        }
    )
    write_config(config, source)
    gw = gateway(config, source)
    bad_print = load(serving).fingerprint
    assert bad_print in gw.app.state.runtime.routing.chooser.fingerprint
    sdk = client(gw)

    def lines() -> int:
        return len(record.read_bytes().splitlines()) if record.exists() else 0

    prompts = script(36)
    tiers = []
    for i, prompt in enumerate(prompts):  # one at a time: every answer finds a free slot
        raw = sdk.chat.completions.with_raw_response.create(
            model="rung", messages=[{"role": "user", "content": prompt}], max_tokens=12,
            temperature=0)  # fmt: skip
        tiers.append(raw.headers["x-rung-tier"])
        wait_until(lambda n=i + 1: lines() == n, timeout=120, what="the shadow line")
    rows = [orjson.loads(x) for x in record.read_bytes().splitlines()]
    assert {r["source"] for r in rows} <= {"shadow", "explore"}
    assert all(len(r["results"]) == 2 for r in rows)  # both tiers' outcomes, every prompt

    cache = tmp_path / "cache"
    log, heldout = tmp_path / "promotions.jsonl", tmp_path / "heldout.jsonl"
    learned = rung("learn", "--records", str(record), "--ladder", "ladders/local.yaml",
                   "--serving", str(serving), "--data", "labels/local-small.jsonl",
                   "labels/local-large.jsonl", "--min-heldout", "10", "--heldout-out",
                   str(heldout), "--log", str(log), "--apply", "--reload", gw.url,
                   cache=cache, RUNG_ADMIN_KEY=ADMIN)  # fmt: skip
    report = learned.stdout + learned.stderr
    assert learned.returncode == 0, report + f"\ntiers served: {tiers}"
    assert "gateway reloaded" in learned.stdout
    print(learned.stdout)  # the figures, for the record (pytest -s)
    good_print = load(serving).fingerprint
    assert good_print != bad_print
    assert good_print in gw.app.state.runtime.routing.chooser.fingerprint  # serving it now
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["action"] == "promote"
    assert entry["prompts"] >= 10
    assert len(heldout.read_bytes().splitlines()) >= 10

    refused = rung("promote", "--serving", str(serving), "--candidate", str(worse), "--data",
                   str(heldout), "--ladder", "ladders/local.yaml", "--log", str(log),
                   "--apply", cache=cache)  # fmt: skip
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "refused" in refused.stdout
    assert load(serving).fingerprint == good_print  # untouched
    headers = {"authorization": f"Bearer {ADMIN}"}
    usage = httpx.get(f"{gw.url}/admin/usage", headers=headers, timeout=5).json()
    assert sum(usage["shadow"]["recorded"].values()) == len(prompts)

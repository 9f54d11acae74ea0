"""`rung promote` as an operator runs it: a deliberately bad serving classifier is replaced by a
better one (and the live gateway reloads it), a worse candidate is refused, every decision is
logged with its figures, and a rollback restores what was replaced."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rung.classifiers.model import Held, load
from rung.weights.fetch import default_models_dir
from tests.integration.harness import make_config, tier, write_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "outcomes-fixture.jsonl"
ADMIN = "admin-key-0123456789"


def rung(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CACHE_HOME": str(cache),
               "RUNG_MODELS_DIR": str(default_models_dir()), **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "rung", *args], capture_output=True, text=True,
                          timeout=300, env=environ, cwd=ROOT)  # fmt: skip


def inverted(good: Path, out: Path) -> None:
    """The good classifier with every prediction turned upside down (and its validation
    record to match): confidently wrong."""
    model = load(good)
    held = {k: Held(1 - h.probabilities, h.scores, h.chars) for k, h in model.held.items()}
    bad = dataclasses.replace(model, weights=-model.weights, bias=-model.bias, held=held)
    bad.save(out)


def test_promote_replaces_a_bad_classifier_refuses_a_worse_one_and_rolls_back(
    tmp_path: Path, fake: Any, gateway: Any
) -> None:
    cache = tmp_path / "cache"
    good = tmp_path / "good"
    trained = rung("train", "--data", str(FIXTURE), "--ladder", "ladders/gsm8k.yaml", "--out",
                   str(good), cache=cache)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    serving = tmp_path / "serving"
    inverted(good, serving)
    worse = tmp_path / "worse"
    inverted(good, worse)
    bad_print, good_print = load(serving).fingerprint, load(good).fingerprint

    names = ["tiny", "small", "medium", "large", "xlarge"]
    config = make_config(
        [tier(n, fake(n)) for n in names],
        server={"admin_key": ADMIN},
        routing={"policy": "classifier", "classifier": str(serving)},
    )
    source = tmp_path / "rung.yaml"
    write_config(config, source)
    gw = gateway(config, source)
    chooser = gw.app.state.runtime.routing.chooser
    assert bad_print in chooser.fingerprint

    log = tmp_path / "promotions.jsonl"
    common = ["--data", str(FIXTURE), "--ladder", "ladders/gsm8k.yaml", "--log", str(log)]
    promoted = rung("promote", "--serving", str(serving), "--candidate", str(good), *common,
                    "--apply", "--reload", gw.url, cache=cache, RUNG_ADMIN_KEY=ADMIN)  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    assert "meets keep:0.95, which the serving classifier misses" in promoted.stdout
    assert "gateway reloaded" in promoted.stdout
    assert load(serving).fingerprint == good_print
    assert good_print in gw.app.state.runtime.routing.chooser.fingerprint  # serving it now

    refused = rung("promote", "--serving", str(serving), "--candidate", str(worse), *common,
                   "--apply", cache=cache)  # fmt: skip
    assert refused.returncode == 3, refused.stderr
    assert "refused" in refused.stdout
    assert load(serving).fingerprint == good_print  # untouched

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["action"] for e in entries] == ["promote", "refuse"]
    first = entries[0]
    assert first["prompts"] > 0
    assert first["candidate"]["keep"] >= 0.945 > first["serving"]["keep"]
    assert first["candidate"]["cost_at_95"] < first["serving"]["cost_at_95"]

    back = rung("promote", "--serving", str(serving), "--rollback", "--log", str(log), cache=cache)
    assert back.returncode == 0, back.stderr
    assert load(serving).fingerprint == bad_print
    assert json.loads(log.read_text().splitlines()[-1])["action"] == "rollback"

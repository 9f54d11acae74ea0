"""`rung recalibrate` as an operator runs it on recorded traffic: a deliberately bad serving
calibrator is replaced by one refitted on labelled outcomes plus the older records, judged on
the newest records; the same candidate against itself is refused."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rung.confidence.calibrator import load_calibrator

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def rung(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rung", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=os.environ)  # fmt: skip


def test_recalibrate_replaces_a_bad_calibrator_and_refuses_a_tie(tmp_path: Path) -> None:
    shipped = load_calibrator(ROOT / "rung" / "confidence" / "defaults" / "local.json")
    flipped = {name: dataclasses.replace(t, weights=[-w for w in t.weights], bias=-t.bias)
               for name, t in shipped.tiers.items()}  # fmt: skip
    serving = tmp_path / "calibrator.json"
    dataclasses.replace(shipped, tiers=flipped).save(serving)
    # Recorded lines as the gateway writes them (signals and a score per answer, keyed by the
    # tier's model), here rung's own labels of the small tier given times.
    records = tmp_path / "shadow.jsonl"
    lines = (ROOT / "labels" / "local-small-signals.jsonl").read_text().splitlines()
    records.write_text("".join(json.dumps({**json.loads(x), "time": i}) + "\n"
                               for i, x in enumerate(lines)))  # fmt: skip
    log = tmp_path / "calibrations.jsonl"
    common = ["--records", str(records), "--ladder", "ladders/local.yaml", "--calibrator",
              str(serving), "--data", "labels/local-large.jsonl", "--log", str(log)]  # fmt: skip
    promoted = rung("recalibrate", *common, "--apply")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted" in promoted.stdout
    entry = json.loads(log.read_text().splitlines()[-1])
    small = entry["tiers"]["small"]
    assert small["examples"] == 46  # the newest 30% of 153
    assert small["candidate_auroc"] > 0.6 > small["serving_auroc"]
    assert serving.with_name("calibrator.json.previous").exists()
    replaced = load_calibrator(serving)
    assert replaced.tiers["small"].weights != flipped["small"].weights

    tie = rung("recalibrate", *common, "--apply")  # the same fit again: nothing better
    assert tie.returncode == 3, tie.stdout + tie.stderr
    assert "refused" in tie.stdout
    assert load_calibrator(serving).tiers["small"].weights == replaced.tiers["small"].weights

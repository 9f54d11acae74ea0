"""`rung train` and `rung eval` as a user runs them, on a small fixture of the shared outcomes
(tests/data/outcomes-fixture.jsonl: 150 GSM8K + 150 MMLU-Pro prompts, a subset of models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "outcomes-fixture.jsonl"


def rung(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "RUNG_MODELS_DIR": str(default_models_dir())}
    return subprocess.run(
        [sys.executable, "-m", "rung", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "clf"
    result = rung(
        "train",
        "--data",
        str(FIXTURE),
        "--ladder",
        "ladders/gsm8k.yaml",
        "--out",
        str(out),
        cache=tmp / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert "trained on 150 prompts" in result.stdout
    return out, tmp


def test_train_writes_a_manifest_that_describes_the_data(trained):
    out, _ = trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in manifest["tiers"]] == ["tiny", "small", "medium", "large", "xlarge"]
    assert manifest["embedder"]["name"] == "minilm-l6-int8"
    assert manifest["training"]["prompts"] == 150
    assert manifest["training"]["files"][0]["name"] == "outcomes-fixture.jsonl"
    assert len(manifest["training"]["tier_accuracy"]) == 5
    assert (tmp := trained[1] / "cache" / "rung" / "embeddings").exists()
    assert any(tmp.iterdir())


def test_eval_of_a_trained_classifier_warns_when_the_data_is_not_held_out(trained):
    out, tmp = trained
    result = rung(
        "eval",
        "--classifier",
        str(out),
        "--data",
        str(FIXTURE),
        "--ladder",
        "ladders/gsm8k.yaml",
        "--out",
        str(tmp / "eval"),
        cache=tmp / "cache",
    )
    assert result.returncode == 0, result.stderr
    assert "in-sample" in result.stderr
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert metrics["prompts"] == 150
    assert (tmp / "eval" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_cross_validated_eval_reports_held_out_metrics(tmp_path: Path):
    result = rung(
        "eval",
        "--data",
        str(FIXTURE),
        "--ladder",
        "ladders/mmlu-pro.yaml",
        "--cv",
        "3",
        "--repeats",
        "1",
        "--out",
        str(tmp_path / "cv"),
        cache=tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    cv = metrics["cross_validation"]
    assert cv["held_out_runs"] == 3
    for key in ("router_cost_at_95", "baseline_cost_at_95", "oracle_cost_at_95"):
        assert 0 < cv[key]["mean"] <= 1.0
    assert cv["oracle_cost_at_95"]["mean"] < cv["baseline_cost_at_95"]["mean"]
    assert len(metrics["sweep"]) == 101
    assert sum(
        metrics["at_default_target"]["tiers"][k]["share"] for k in range(4)
    ) == pytest.approx(1.0)
    assert "held out (3 folds)" in result.stdout


def test_a_ladder_the_data_does_not_cover_is_a_clear_error(tmp_path: Path):
    ladder = tmp_path / "l.yaml"
    ladder.write_text(
        "name: x\ntiers:\n  - {name: a, model: nobody, price: 1}\n"
        "  - {name: b, model: nothing, price: 2}\n"
    )
    result = rung(
        "train",
        "--data",
        str(FIXTURE),
        "--ladder",
        str(ladder),
        "--out",
        str(tmp_path / "o"),
        cache=tmp_path / "cache",
    )
    assert result.returncode != 0
    assert "no prompt" in result.stderr

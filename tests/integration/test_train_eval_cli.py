"""`rung train` and `rung eval` as a user runs them, on a small fixture of the shared outcomes
(tests/data/outcomes-fixture.jsonl: 150 GSM8K + 150 MMLU-Pro prompts, a subset of models)."""

from __future__ import annotations

import json
import os
import re
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
    assert "goals are fitted on their" in result.stdout
    assert "held out (" in result.stdout
    # each goal says whether it was met, with intervals (it printed "met" beside a miss)
    router = result.stdout.split("\ncascade (")[0]  # the cascade's own goal lines follow
    goals = [line for line in router.splitlines() if line.startswith("  goal ")]
    assert len(goals) >= 4
    assert all(("(fitting prompts, met:" in g) != ("NOT met" in g) for g in goals)
    assert all(re.search(r"keeps [0-9.]+ \[[0-9.]+, [0-9.]+\]", g) for g in goals)
    return out, tmp


def test_train_writes_a_manifest_that_describes_the_data(trained):
    out, _ = trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "rung-difficulty/3"
    assert [t["name"] for t in manifest["tiers"]] == ["tiny", "small", "medium", "large", "xlarge"]
    assert manifest["embedder"]["name"] == "static-minilm-l6"
    training = manifest["training"]
    assert training["prompts"] == 150
    split = training["split"]
    assert split["train"] + split["test"] == 150
    assert split["validation"] == split["train"]  # out-of-fold predictions of every one
    assert 100 <= split["train"] <= 140  # 85% of the texts, give or take the hash
    assert training["files"][0]["name"] == "outcomes-fixture.jsonl"
    assert len(training["tier_accuracy"]) == 5
    held = training["held_out"]
    assert held["prompts"] == split["test"]
    assert {g["goal"] for g in held["goals"]} >= {"keep:0.95", "max_cost_share:0.5"}
    assert (tmp := trained[1] / "cache" / "rung" / "embeddings").exists()
    assert any(tmp.iterdir())


def test_the_split_is_by_text_and_training_prompts_stay_out_of_evaluations(trained):
    out, tmp = trained
    from rung.classifiers.model import load, text_digests
    from rung.classifiers.outcomes import read_outcomes

    model = load(out)
    texts = [o.prompt for o in read_outcomes([FIXTURE]) if o.dataset.startswith("gsm8k")]
    digests = text_digests(texts)
    assert len(model.trained_texts) == model.training["split"]["train"]
    assert set(model.trained_texts.tolist()) <= set(digests.tolist())
    # An evaluation of the classifier on its own training file scores only the other prompts.
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
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert metrics["left_out_as_trained_on"] == len(model.trained_texts)
    assert metrics["prompts"] == 150 - len(model.trained_texts)
    assert f"left out {len(model.trained_texts)} prompts" in result.stderr
    assert (tmp / "eval" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_scores_the_untouched_test_split_beside_baseline_and_oracle(tmp_path: Path):
    result = rung(
        "eval",
        "--data",
        str(FIXTURE),
        "--ladder",
        "ladders/mmlu-pro.yaml",
        "--out",
        str(tmp_path / "held"),
        cache=tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "held" / "metrics.json").read_text())
    assert metrics["prompts"] == metrics["split"]["test"]
    for key in ("router", "threshold_rule", "baseline", "oracle"):
        assert 0 < metrics[key]["cost_at_95"] <= 1.0
    assert metrics["oracle"]["cost_at_95"] < metrics["baseline"]["cost_at_95"]
    assert "no-information baseline" in result.stdout
    assert "goal keep:0.95" in result.stdout


def test_cross_validation_is_a_development_aid_on_train_and_validation(tmp_path: Path):
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
    cv = json.loads((tmp_path / "cv" / "metrics.json").read_text())["cross_validation"]
    assert cv["held_out_runs"] == 3
    for key in ("router_cost_at_95", "baseline_cost_at_95", "oracle_cost_at_95"):
        assert 0 < cv[key]["mean"] <= 1.0
    assert cv["oracle_cost_at_95"]["mean"] < cv["baseline_cost_at_95"]["mean"]
    assert "development aid" in result.stdout


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


def test_an_unknown_calibrator_is_refused_before_any_work(tmp_path: Path) -> None:
    result = rung(
        "train", "--data", str(tmp_path / "never-read.jsonl"), "--ladder", "ladders/gsm8k.yaml",
        "--out", str(tmp_path / "clf"), "--calibrator", "nope", cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 2
    assert "no confidence calibrator 'nope'" in result.stderr
    assert not (tmp_path / "clf").exists()

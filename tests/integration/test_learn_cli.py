"""`rung learn`'s refusals before any fitting: too few recent prompts with every tier's outcome,
and records without prompt text (counted, never trained on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_too_few_recent_prompts_fit_nothing(tmp_path: Path) -> None:
    records = tmp_path / "shadow.jsonl"
    lines = [{"time": i, "source": "shadow", "dataset": "shadow",
              "results": {"qwen2.5-coder-0.5b-instruct": {"score": 1.0},
                          "qwen2.5-coder-1.5b-instruct": {"score": 1.0}}}
             for i in range(5)]  # fmt: skip
    lines += [{**line, "id": f"shadow/{i}", "prompt": f"What is {i} + {i}?"}
              for i, line in enumerate(lines[:4])]  # fmt: skip
    records.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "candidate"
    done = subprocess.run(
        [sys.executable, "-m", "rung", "learn", "--records", str(records), "--ladder",
         "ladders/local.yaml", "--serving", "rung/classifiers/defaults/local", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "5 of 9 records carry no prompt" in done.stdout
    assert "only 2 recent prompts" in done.stderr  # the newest 30% of 4 prompts
    assert not out.exists()  # nothing fitted, nothing written

"""`rung label` against a scriptable model server: grading, the output format, resuming."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from rung.classifiers.label import Endpoint, label, select
from rung.classifiers.outcomes import read_outcomes

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "outcomes-fixture.jsonl"


def test_labels_are_graded_appended_and_merge_with_other_tiers(fake, tmp_path):
    server = fake("small")
    prompts = select([FIXTURE], limit=4, datasets=["gsm8k"])
    server.behavior.reply = f"Let me think. Answer: {prompts[0].reference}"
    out = tmp_path / "labels.jsonl"
    summary = asyncio.run(
        label(prompts, Endpoint(server.url, "small"), out, name="small", progress=False)
    )
    assert (summary.labelled, summary.failed) == (4, 0)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"] for r in rows} == {p.id for p in prompts}
    first = next(r for r in rows if r["id"] == prompts[0].id)
    result = first["results"]["small"]
    assert result["score"] == 1.0
    assert result["grader"] == "number"
    assert result["output_chars"] == len(server.behavior.reply)
    wrong = [r for r in rows if r["reference"] != prompts[0].reference]
    assert all(r["results"]["small"]["score"] == 0.0 for r in wrong)
    assert "Answer: <number>" in server.stats.last_payload["messages"][0]["content"]
    assert server.stats.last_payload["temperature"] == 0

    # A second tier appended to the same file merges by id.
    asyncio.run(label(prompts, Endpoint(server.url, "large"), out, name="large", progress=False))
    merged = list(read_outcomes([out]))
    assert len(merged) == 4
    assert all(set(o.results) == {"small", "large"} for o in merged)


def test_resuming_labels_nothing_twice_and_survives_a_torn_line(fake, tmp_path):
    server = fake("small")
    prompts = select([FIXTURE], limit=3, datasets=None)  # 3 gsm8k + 3 mmlu-pro
    out = tmp_path / "labels.jsonl"
    asyncio.run(label(prompts[:2], Endpoint(server.url, "m"), out, name="m", progress=False))
    with out.open("a") as f:
        f.write('{"id": "half a line')  # the process died mid-write
    summary = asyncio.run(label(prompts, Endpoint(server.url, "m"), out, name="m", progress=False))
    assert (summary.skipped, summary.labelled) == (2, 4)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(p.id for p in prompts)
    assert server.stats.requests == 6
    mmlu = [o for o in read_outcomes([out]) if o.dataset == "mmlu-pro"]
    assert all(o.results["m"]["grader"] == "choice" for o in mmlu)


def test_failures_are_counted_not_written(fake, tmp_path):
    server = fake("small")
    server.behavior.mode = "error"
    out = tmp_path / "labels.jsonl"
    summary = asyncio.run(
        label(
            select([FIXTURE], 2, ["gsm8k"]),
            Endpoint(server.url, "m"),
            out,
            name="m",
            progress=False,
        )
    )
    assert (summary.failed, summary.labelled) == (2, 0)
    assert out.read_text() == ""


def test_the_cli_prints_a_summary(fake, tmp_path):
    server = fake("small")
    server.behavior.reply = "The answer is (B)."
    out = tmp_path / "labels.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rung",
            "label",
            "--url",
            server.url,
            "--model",
            "small",
            "--data",
            str(FIXTURE),
            "--datasets",
            "mmlu-pro",
            "--limit",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "small: labelled 5 (skipped 0 already done, 0 failed), accuracy" in result.stdout
    assert len(out.read_text().splitlines()) == 5

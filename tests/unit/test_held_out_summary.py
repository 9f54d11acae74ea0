"""The startup line that says what the cache verifier serves: natural pairs first (issue 31:
the rule-made edits carried the old headline), and nothing claimed for other settings."""

from __future__ import annotations

import json
from typing import Any

from rung.cache.verifier import resolve_verifier
from rung.router.runtime import held_out_summary


def _report() -> dict[str, Any]:
    return {
        "floor": 0.75,
        "budget": 0.01,
        "test": {
            "pairs-paraphrase": {"pairs": 2346, "served": 0.1185},
            "pairs-near-miss": {"pairs": 512, "served": 0.0312},
            "all paraphrases": {"pairs": 16112, "served": 0.6468},
            "all near misses": {"pairs": 13098, "served": 0.0018},
        },
    }


def test_natural_pairs_come_first_and_the_overall_figure_says_what_it_includes() -> None:
    line = held_out_summary(_report(), 0.75, 0.01)
    assert line.startswith(
        "on held-out natural pairs (Quora, human labels) it served 11.8% of 2,346 paraphrases "
        "and 3.1% of 512 near misses"
    )
    assert line.endswith("65% of paraphrases and 0.18% of near misses over all 29,210 held-out "
                         "test pairs, rule-made edits included")  # fmt: skip


def test_other_settings_claim_nothing() -> None:
    assert "no held-out figures" in held_out_summary(_report(), 0.8, 0.01)
    assert "no held-out figures" in held_out_summary(_report(), 0.75, 0.02)


def test_the_shipped_verifier_reports_its_natural_pairs() -> None:
    manifest = json.loads((resolve_verifier("default") / "manifest.json").read_text())
    report = manifest["report"]
    line = held_out_summary(report, report["floor"], report["budget"])
    assert line.startswith("on held-out natural pairs (Quora, human labels)")

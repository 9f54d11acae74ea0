"""The learning loop's data step: records split by prompt text, the newest held out."""

from __future__ import annotations

import pytest

from rung.classifiers.learn import slice_records


def row(prompt: str | None, time: float, **extra: object) -> dict[str, object]:
    line: dict[str, object] = {"time": time, "results": {}}
    if prompt is not None:
        line |= {"id": f"shadow/{prompt}", "prompt": prompt}
    return line | extra


def test_the_newest_prompts_are_held_out_and_never_trained_on():
    rows = [row(f"q{i}", float(i)) for i in range(10)]
    rows.append(row("Q3 ", 20.0))  # q3 asked again, last: the whole prompt is recent now
    slices = slice_records(rows, 0.3)
    held = {r["prompt"] for r in slices.held_out}
    trained = {r["prompt"] for r in slices.train}
    assert held == {"q9", "q8", "q3", "Q3 "}
    assert not {p.lower().strip() for p in held} & {p.lower().strip() for p in trained}
    assert len(slices.train) + len(slices.held_out) == 11


def test_records_without_text_are_counted_not_used():
    slices = slice_records([row(None, 1.0), row("a", 2.0), row("b", 3.0)], 0.5)
    assert slices.without_text == 1
    assert [r["prompt"] for r in slices.held_out] == ["b"]
    assert [r["prompt"] for r in slices.train] == ["a"]


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1])
def test_the_holdout_must_leave_something_on_both_sides(share: float):
    with pytest.raises(ValueError, match="holdout"):
        slice_records([row("a", 1.0)], share)

"""The learning loop's data step (`rung learn`): shadow records in, a training set and a
held-out set of recent prompts out. Pure: rows in, rows out.

Records without prompt text (`shadow.record_text: false`) cannot train a classifier and are
counted, not used. Rows of one prompt text (repeats, and the shadow and explore lines of one
request) stay together; the most recent share of distinct prompts is held out, so the candidate
is judged on traffic newer than anything it was fitted on, and no held-out text is trained on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rung.classifiers.model import text_digests


@dataclass(frozen=True)
class Slices:
    train: list[dict[str, Any]]
    held_out: list[dict[str, Any]]
    without_text: int
    """Records that carry no prompt (recorded without `record_text`)."""


def slice_records(rows: Iterable[dict[str, Any]], holdout: float) -> Slices:
    """Split records by prompt text (`text_digests`, the identity training and evaluation use):
    the newest `holdout` share of distinct prompts (by their latest record) is held out; the
    rest trains."""
    if not 0 < holdout < 1:
        raise ValueError("holdout must be between 0 and 1")
    usable: list[dict[str, Any]] = []
    without = 0
    for row in rows:
        prompt = row.get("prompt")
        if isinstance(prompt, str) and prompt and "id" in row:
            usable.append(row)
        else:
            without += 1
    groups: dict[int, list[dict[str, Any]]] = {}
    for row, digest in zip(usable, text_digests([r["prompt"] for r in usable]), strict=True):
        groups.setdefault(int(digest), []).append(row)
    order = sorted(groups, key=lambda k: max(float(r.get("time", 0)) for r in groups[k]))
    held = math.ceil(holdout * len(order)) if order else 0
    newest = set(order[len(order) - held :])
    train = [r for k in order if k not in newest for r in groups[k]]
    held_out = [r for k in order if k in newest for r in groups[k]]
    return Slices(train, held_out, without)

"""Labelled outcomes (the JSONL format of the shared data) and ladders that map tiers to them.

One line per prompt: {"id", "dataset", "prompt", "reference", "category"?, "results":
{model: {"score": 0..1, "output_chars": int, ...}}}. A ladder file (YAML) names, smallest first,
each tier's model in that data and its price in USD per million tokens.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rung.errors import ConfigError, RungError

Array = npt.NDArray[np.float64]


class DataError(RungError):
    """Outcome data that cannot be used as asked (e.g. it does not cover the ladder)."""


class LadderTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    model: str | dict[str, str]
    """The model's key in the outcome files' `results`; or, per data set, {dataset: key} (the
    same tier is often a slightly different release in each data set)."""
    price: float = Field(gt=0)
    """USD per million tokens, prompt and completion alike."""

    def model_for(self, dataset: str) -> str | None:
        if isinstance(self.model, str):
            return self.model
        return self.model.get(dataset)


class Ladder(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    tiers: list[LadderTier] = Field(min_length=2)

    @property
    def prices(self) -> Array:
        return np.array([t.price for t in self.tiers], dtype=np.float64)


def load_ladder(path: str | Path) -> Ladder:
    try:
        return Ladder.model_validate(yaml.safe_load(Path(path).read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(str(path), [str(exc)]) from None


@dataclass(frozen=True)
class Outcome:
    id: str
    dataset: str
    prompt: str
    reference: str
    results: dict[str, dict[str, Any]]
    category: str | None = None


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """JSON objects of a JSONL file (or a gzipped one, `.gz`); a torn last line (an interrupted
    write) is skipped."""
    path = Path(path)
    with (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else path.open(encoding="utf-8")
    ) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise
                continue
            yield row


def read_outcomes(paths: Iterable[str | Path]) -> Iterator[Outcome]:
    """Outcomes of every file, rows with the same id merged (results of several runs or tiers,
    e.g. one `rung label` pass per tier appended to one file), in first-seen order."""
    merged: dict[str, Outcome] = {}
    for path in paths:
        for row in read_rows(path):
            previous = merged.get(row["id"])
            if previous is not None:
                previous.results.update(row.get("results", {}))
                continue
            merged[row["id"]] = Outcome(
                id=row["id"],
                dataset=row.get("dataset", ""),
                prompt=row["prompt"],
                reference=str(row.get("reference", "")),
                results=dict(row.get("results", {})),
                category=row.get("category"),
            )
    yield from merged.values()


@dataclass(frozen=True)
class LadderData:
    """The prompts every tier of a ladder was evaluated on, as aligned arrays."""

    outcomes: list[Outcome]
    scores: Array
    """[prompts, tiers] in [0, 1]."""
    costs: Array
    """[prompts, tiers] USD: price × (prompt_chars + output_chars) / 4 tokens."""
    others: Array
    """[prompts, models] scores of every model outside the ladder (NaN where absent): extra
    supervision about how hard each prompt is."""


def ladder_data(outcomes: Iterable[Outcome], ladder: Ladder) -> LadderData:
    rows: list[Outcome] = []
    keys: list[list[str]] = []
    for o in outcomes:
        names = [t.model_for(o.dataset) for t in ladder.tiers]
        if all(n is not None and n in o.results for n in names):
            rows.append(o)
            keys.append([str(n) for n in names])
    used = {n for row in keys for n in row}
    others = sorted({m for o in rows for m in o.results} - used)
    pairs = list(zip(rows, keys, strict=True))
    scores = np.array([[float(o.results[n]["score"]) for n in row] for o, row in pairs])
    chars = np.array(
        [
            [len(o.prompt) + float(o.results[n].get("output_chars", 0)) for n in row]
            for o, row in pairs
        ]
    )
    costs = chars.reshape(len(rows), len(ladder.tiers)) / 4 * ladder.prices / 1e6
    extra = np.array(
        [[float(o.results[m]["score"]) if m in o.results else np.nan for m in others] for o in rows]
    ).reshape(len(rows), len(others))
    return LadderData(
        rows,
        scores.reshape(len(rows), len(ladder.tiers)),
        costs.reshape(len(rows), len(ladder.tiers)),
        extra,
    )

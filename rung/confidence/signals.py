"""Confidence signals from an answer: token log-probability statistics and cheap text checks.

Everything here is a pure function over plain values, so the gateway (on a full answer or on the
first tokens of a stream) and `rung label` (recording signals next to each graded outcome) compute
exactly the same numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

LOWEST_K = 5
"""How many of the least likely tokens `lowest_k_mean` averages."""

LOW_QUANTILE = 0.1

_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry, |i cannot|i can'?t|i can not|i am unable|i'?m unable|"
    r"i'?m not able|i am not able|as an ai\b|i won'?t be able)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TokenScore:
    """One generated token: its log-probability and the entropy of the top alternatives."""

    logprob: float
    entropy: float | None = None


def token_scores(content: Iterable[Mapping[str, Any]] | None) -> list[TokenScore]:
    """The OpenAI `choices[].logprobs.content` list (also one stream chunk's) as token scores.

    Entries without a numeric logprob are skipped: a backend that sends a malformed entry loses
    that token's evidence, never the request.
    """
    scores = []
    for entry in content or ():
        logprob = entry.get("logprob")
        if not isinstance(logprob, int | float) or isinstance(logprob, bool):
            continue
        top = entry.get("top_logprobs")
        alternatives = [
            float(alt["logprob"])
            for alt in top or ()
            if isinstance(alt, Mapping) and isinstance(alt.get("logprob"), int | float)
        ]
        scores.append(TokenScore(float(logprob), top_entropy(alternatives) if top else None))
    return scores


def top_entropy(logprobs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k alternatives, with the mass they leave out as one more outcome.

    A lower bound of the full distribution's entropy that only needs what the API returns.
    """
    probs = [math.exp(min(lp, 0.0)) for lp in logprobs]
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in [*probs, rest] if p > 0.0)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text))


def is_invalid_json(text: str) -> bool:
    """True when the text is not one JSON value (a fenced ```json block counts as JSON)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


@dataclass(frozen=True)
class Signals:
    tokens: int
    """Tokens with a logprob (0 when the backend sent none)."""
    mean_logprob: float | None
    min_logprob: float | None
    low_quantile_logprob: float | None
    lowest_k_mean: float | None
    mean_entropy: float | None
    truncated: bool
    """finish_reason == "length": the answer was cut off."""
    empty: bool
    refusal: bool
    invalid_json: bool
    """Only ever true when the request asked for a JSON response format."""

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signals:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending sequence (numpy's default method)."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def answer_signals(
    text: str,
    finish_reason: str | None,
    scores: Sequence[TokenScore],
    *,
    json_expected: bool = False,
) -> Signals:
    """Every signal of one answer (or of the first tokens of one, for a stream probe)."""
    logprobs = sorted(score.logprob for score in scores)
    entropies = [score.entropy for score in scores if score.entropy is not None]
    has = bool(logprobs)
    return Signals(
        tokens=len(logprobs),
        mean_logprob=sum(logprobs) / len(logprobs) if has else None,
        min_logprob=logprobs[0] if has else None,
        low_quantile_logprob=_quantile(logprobs, LOW_QUANTILE) if has else None,
        lowest_k_mean=sum(logprobs[:LOWEST_K]) / len(logprobs[:LOWEST_K]) if has else None,
        mean_entropy=sum(entropies) / len(entropies) if entropies else None,
        truncated=finish_reason == "length",
        empty=not text.strip(),
        refusal=is_refusal(text),
        invalid_json=json_expected and is_invalid_json(text),
    )

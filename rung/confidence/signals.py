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
from typing import Any, NamedTuple, TypeGuard

LOWEST_K = 5
"""How many of the least likely tokens `lowest_k_mean` averages."""

LOW_QUANTILE = 0.1

_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry, |i cannot|i can'?t|i can not|i am unable|i'?m unable|"
    r"i'?m not able|i am not able|as an ai\b|i won'?t be able)",
    re.IGNORECASE,
)


class TokenScore(NamedTuple):
    """One generated token: its log-probability and the entropy of the top alternatives.

    A named tuple, not a dataclass: an answer makes one per token, and a frozen dataclass costs
    several times a tuple to build.
    """

    logprob: float
    entropy: float | None = None


def _is_number(value: object) -> TypeGuard[float | int]:
    # type() rather than isinstance(): a JSON bool is not a logprob, and this runs per token
    kind = type(value)
    return kind is float or kind is int


def token_scores(content: Iterable[Any] | None) -> list[TokenScore]:
    """The OpenAI `choices[].logprobs.content` list (also one stream chunk's) as token scores.

    Entries without a numeric logprob are skipped: a backend that sends a malformed entry loses
    that token's evidence, never the request. This runs over every token of every answer that
    escalation judges (vLLM sends five alternatives each), so it is one plain loop: about a
    fifth of the cost of building per-alternative lists.
    """
    scores: list[TokenScore] = []
    append = scores.append
    for entry in content or ():
        if not isinstance(entry, dict):
            continue
        logprob = entry.get("logprob")
        if not _is_number(logprob):
            continue
        top = entry.get("top_logprobs")
        append(TokenScore(float(logprob), _alternatives_entropy(top) if top else None))
    return scores


def _alternatives_entropy(top: object) -> float:
    """`top_entropy` of a `top_logprobs` list's numeric entries, without building the list."""
    covered = entropy = 0.0
    if isinstance(top, list):
        for alt in top:
            if not isinstance(alt, dict):
                continue
            logprob = alt.get("logprob")
            if not _is_number(logprob):
                continue
            if logprob < 0.0:
                p = math.exp(logprob)
                covered += p
                entropy -= p * logprob  # p * log(p), with log(p) the logprob itself
            else:
                covered += 1.0  # p = 1 contributes p * log(p) = 0
    rest = 1.0 - covered
    if rest > 0.0:
        entropy -= rest * math.log(rest)
    return entropy + 0.0  # never -0.0


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

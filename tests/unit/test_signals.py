"""Confidence signals: table-tested pure functions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rung.confidence.signals import (
    Signals,
    TokenScore,
    answer_signals,
    is_invalid_json,
    is_refusal,
    token_scores,
    top_entropy,
)


def test_token_scores_reads_openai_logprobs_content() -> None:
    content = [
        {"token": "4", "logprob": -0.5, "top_logprobs": [{"token": "4", "logprob": -0.5}]},
        {"token": "2", "logprob": -2.0},
        {"token": "x", "logprob": None},  # malformed: skipped, not fatal
        {"token": "y", "logprob": True},  # a bool is not a number here
    ]
    scores = token_scores(content)
    assert [s.logprob for s in scores] == [-0.5, -2.0]
    assert scores[1].entropy is None
    assert scores[0].entropy == pytest.approx(top_entropy([-0.5]))
    assert token_scores(None) == []


@pytest.mark.parametrize(
    ("logprobs", "expected"),
    [
        ([0.0], 0.0),  # certain
        ([math.log(0.5), math.log(0.5)], math.log(2)),  # a coin toss
        ([math.log(0.5)], math.log(2)),  # the other half is the "rest" outcome
        ([math.log(0.25)] * 4, math.log(4)),
        ([0.1], 0.0),  # a rounding error above 0 is clamped to probability 1
    ],
)
def test_top_entropy(logprobs: list[float], expected: float) -> None:
    assert top_entropy(logprobs) == pytest.approx(expected)


@given(st.lists(st.floats(min_value=-50.0, max_value=0.5, allow_nan=False), min_size=1, max_size=8))
def test_token_scores_entropy_is_top_entropy_of_the_alternatives(alternatives: list[float]) -> None:
    # token_scores computes the entropy in one pass over the JSON; top_entropy is the definition
    content = [{"logprob": -0.1, "top_logprobs": [{"logprob": lp} for lp in alternatives]}]
    (score,) = token_scores(content)
    assert score.entropy == pytest.approx(top_entropy(alternatives), abs=1e-12)


def test_token_scores_skips_malformed_alternatives_and_entries() -> None:
    content = [
        "not an entry",
        {"logprob": -1.0, "top_logprobs": [{"logprob": math.log(0.5)}, "x", {"logprob": "-1"},
                                           {"logprob": False}, {"token": "no logprob"}]},
        {"logprob": -1.0, "top_logprobs": {"logprob": -1.0}},  # not a list: no alternatives
        {"logprob": -1.0, "top_logprobs": []},  # none sent
    ]  # fmt: skip
    scores = token_scores(content)
    assert [s.logprob for s in scores] == [-1.0, -1.0, -1.0]
    assert scores[0].entropy == pytest.approx(math.log(2))  # only the one valid alternative
    assert scores[1].entropy == 0.0  # all the mass is "the rest": certain
    assert scores[2].entropy is None


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot answer this.", True),
        ("  As an AI language model, I", True),
        ("Im unable to do that", True),
        ("The answer is 42.", False),
        ("Sorry for the wait: the answer is 3", False),
        ("It is sorry business, I cannot say more", False),  # only the opening counts
    ],
)
def test_is_refusal(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


@pytest.mark.parametrize(
    ("text", "invalid"),
    [
        ('{"a": 1}', False),
        ('```json\n{"a": [1, 2]}\n```', False),
        ("[1, 2, 3]", False),
        ('{"a": 1', True),
        ("Here is the JSON: {}", True),
        ("", True),
    ],
)
def test_is_invalid_json(text: str, invalid: bool) -> None:
    assert is_invalid_json(text) is invalid


def test_answer_signals_statistics() -> None:
    logprobs = [-0.1, -0.2, -3.0, -0.05, -1.0, -0.4, -0.3, -0.0, -2.0, -0.6, -0.7]
    scores = [TokenScore(lp, 0.5) for lp in logprobs]
    signals = answer_signals("Answer: 7", "stop", scores)
    assert signals.tokens == 11
    assert signals.mean_logprob == pytest.approx(sum(logprobs) / 11)
    assert signals.min_logprob == -3.0
    # numpy's default (linear) 10% quantile of 11 values is the second smallest.
    assert signals.low_quantile_logprob == pytest.approx(-2.0)
    assert signals.lowest_k_mean == pytest.approx((-3.0 - 2.0 - 1.0 - 0.7 - 0.6) / 5)
    assert signals.mean_entropy == pytest.approx(0.5)
    assert [signals.truncated, signals.empty, signals.refusal, signals.invalid_json] == [False] * 4


def test_answer_signals_without_logprobs_keeps_the_text_signals() -> None:
    signals = answer_signals("   ", "length", [], json_expected=True)
    assert signals.tokens == 0
    assert (signals.mean_logprob, signals.mean_entropy) == (None, None)
    assert [signals.truncated, signals.empty, signals.invalid_json] == [True] * 3
    # JSON validity is only a signal when JSON was asked for.
    assert not answer_signals("not json", "stop", []).invalid_json


def test_signals_round_trip_through_dict() -> None:
    signals = answer_signals("ok", "stop", [TokenScore(-0.123456789, 0.987654321)])
    data = signals.to_dict()
    assert data["mean_logprob"] == -0.12346
    assert Signals.from_dict(data) == Signals.from_dict(Signals.from_dict(data).to_dict())

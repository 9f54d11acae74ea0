"""Judging one request's answers at the gateway: the verifier's probability, agreement between
tiers, the calibrator-only fallback, tiers outside the policy."""

from __future__ import annotations

import numpy as np

from rung.classifiers.cascade import Params
from rung.classifiers.verifier import INPUTS, AnswerVerifier
from rung.router.cascading import Judging, legacy

SURE = '{"reasoning": "3 + 5 = 8", "answer": "8"}'


def verifier() -> AnswerVerifier:
    """P(right) rises with `number_found` only: an answer with a final number is trusted."""
    weights = np.zeros((3, len(INPUTS)))
    weights[:, INPUTS.index("number_found")] = 4.0
    return AnswerVerifier(
        ["s", "m", "l"], np.zeros(len(INPUTS)), np.ones(len(INPUTS)), weights,
        np.full(3, -2.0), {},
    )  # fmt: skip


def judging(tau: float = 0.8) -> Judging:
    # config tiers 4, 5, 6 are the policy's tiers 0, 1, 2; the path climbs one at a time
    return Judging(Params(0.1, tau, (1, 2)), (4, 5, 6), (0.5, 0.6, 0.9), verifier(), "Tom?")


def test_a_verified_answer_is_accepted_and_an_unverified_one_climbs():
    sure = judging().judge(4, SURE, "stop", None, None)
    assert sure.next is None
    assert sure.verified > 0.8
    assert sure.result == "8"
    vague = judging().judge(4, "Maybe some apples.", "stop", None, None)
    assert vague.next == 5
    assert vague.verified < 0.2


def test_two_tiers_that_agree_stop_the_climb():
    unsure = judging(tau=0.99)  # nothing is verified at this bar
    again = unsure.judge(5, SURE, "stop", None, previous="8")
    assert again.agreed
    assert again.next is None
    differ = unsure.judge(5, SURE, "stop", None, previous="9")
    assert not differ.agreed
    assert differ.next == 6


def test_the_top_and_tiers_outside_the_policy_are_kept():
    assert judging(tau=0.99).judge(6, "Maybe.", "stop", None, None).next is None
    assert judging(tau=0.99).judge(7, "Maybe.", "stop", None, None).next is None


def test_without_a_verifier_the_calibrators_confidence_decides():
    calibrated = legacy(0.5, (0, 1, 2), "Tom?")
    assert calibrated.judge(0, SURE, "stop", 0.3, None).next == 1
    assert calibrated.judge(0, SURE, "stop", 0.7, None).next is None
    assert calibrated.judge(0, SURE, "stop", None, None).next is None  # nothing to judge by
    assert calibrated.judge(1, SURE, "stop", 0.3, previous="8").next == 2  # no agreement rule

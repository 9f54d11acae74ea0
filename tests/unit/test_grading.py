from __future__ import annotations

from fractions import Fraction

import pytest

from rung.classifiers.grading import (
    extract_choice,
    extract_number,
    grade_choice,
    grade_exact,
    grade_number,
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("She sells 16 - 3 - 4 = 9 eggs, so 9 * 2 = 18 dollars.\nAnswer: 18", Fraction(18)),
        ("The answer is $1,250.", Fraction(1250)),
        ("so the total is \\boxed{42} and we check 43", Fraction(42)),
        ("Answer: -3.5", Fraction("-3.5")),
        ("He pays 5 + 3 = 8", Fraction(8)),
        ("The final answer is **70000**", Fraction(70000)),
        ("I do not know", None),
        ("Answer: .5 liters", Fraction(1, 2)),
    ],
)
def test_extract_number(answer, expected):
    assert extract_number(answer) == expected


@pytest.mark.parametrize(
    ("answer", "reference", "score"),
    [
        ("... Answer: 18", "18", 1.0),
        ("... Answer: 18.0", "18", 1.0),
        ("... Answer: 19", "18", 0.0),
        ("The profit is $70,000.", "70000", 1.0),
        ("no number", "18", 0.0),
        ("Answer: 18", "not a number", 0.0),
    ],
)
def test_grade_number(answer, reference, score):
    assert grade_number(answer, reference) == score


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("Let's think... The answer is (C).", "C"),
        ("answer: b", "B"),
        ("Reasoning here.\n\nD", "D"),
        ("The answer is **J**", "J"),
        ("Option A is wrong because... so the answer is E", "E"),
        ("I am not sure", None),
    ],
)
def test_extract_choice(answer, letter):
    assert extract_choice(answer) == letter


def test_grade_choice_and_exact():
    assert grade_choice("The answer is (c)", "C") == 1.0
    assert grade_choice("The answer is (c)", "D") == 0.0
    assert grade_exact("  Paris. ", "paris") == 1.0
    assert grade_exact("Lyon", "Paris") == 0.0

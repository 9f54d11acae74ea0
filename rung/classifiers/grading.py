"""Grading a model's answer against a reference: pure functions, no I/O.

Math answers are compared as numbers (the last number in the answer, or the one after an
explicit "answer" marker); multiple choice compares option letters; everything else falls back to
normalised exact match.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+"
_MARKED = re.compile(
    r"(?:final answer|answer)\s*(?:is|:|=)?\s*(?:\\boxed\{)?\s*\**\s*(" + _NUMBER + ")",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}")
_ANY = re.compile(_NUMBER)
_CHOICE_MARKED = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?\**([A-J])\**\)?(?![A-Za-z])", re.IGNORECASE
)
_CHOICE_ALONE = re.compile(r"^\W*\(?([A-J])\)?\W*$")


def parse_number(text: str) -> Fraction | None:
    cleaned = text.replace(",", "").replace("$", "").strip()
    if not cleaned or cleaned in {"-", "."}:
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(answer: str) -> Fraction | None:
    """The answer's final number: a boxed or 'answer:'-marked one if present, else the last."""
    for pattern in (_BOXED, _MARKED):
        found = pattern.findall(answer)
        if found:
            return parse_number(found[-1])
    numbers = _ANY.findall(answer)
    return parse_number(numbers[-1]) if numbers else None


def grade_number(answer: str, reference: str) -> float:
    expected = parse_number(reference)
    got = extract_number(answer)
    return float(expected is not None and got is not None and got == expected)


def extract_choice(answer: str) -> str | None:
    """The option letter (A-J) the answer settles on."""
    found = _CHOICE_MARKED.findall(answer)
    if found:
        return str(found[-1]).upper()
    for line in reversed(answer.strip().splitlines()):
        alone = _CHOICE_ALONE.match(line.strip())
        if alone:
            return alone.group(1)
    return None


def grade_choice(answer: str, reference: str) -> float:
    return float(extract_choice(answer) == reference.strip().upper())


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def grade_exact(answer: str, reference: str) -> float:
    return float(normalise(answer) == normalise(reference))

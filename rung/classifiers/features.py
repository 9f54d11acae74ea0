"""Cheap text features beside the embedding: what a sentence embedding does not see, such as
how many numbers a word problem juggles. Pure; the order of FEATURE_NAMES is the contract
between training and serving."""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_STEP_WORDS = re.compile(
    r"\b(each|per|every|twice|half|times|percent|average|remaining|rest|total|more than|"
    r"less than|fewer|left|after|then|if)\b",
    re.IGNORECASE,
)
_OPTION = re.compile(r"^[A-J]\.\s", re.MULTILINE)
_PERCENT = re.compile(r"\bpercent", re.IGNORECASE)
_FRACTION = re.compile(r"\b\d+/\d+\b")

FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "sentences",
    "numbers",
    "distinct_numbers",
    "log_max_number",
    "decimals",
    "percent",
    "fractions",
    "money",
    "step_words",
    "options",
    "latex",
    "code",
)


def text_features(text: str) -> list[float]:
    numbers = [n.replace(",", "") for n in _NUMBER.findall(text)]
    values = []
    for n in numbers:
        try:
            values.append(abs(float(n)))
        except ValueError:
            continue
    return [
        math.log1p(len(text)),
        math.log1p(len(text.split())),
        float(len(_SENTENCE.findall(text))),
        float(len(numbers)),
        float(len(set(numbers))),
        math.log10(1 + max(values)) if values else 0.0,
        float(sum("." in n for n in numbers)),
        float(text.count("%") + len(_PERCENT.findall(text))),
        float(len(_FRACTION.findall(text))),
        float(text.count("$")),
        float(len(_STEP_WORDS.findall(text))),
        float(len(_OPTION.findall(text))),
        float(text.count("\\") + text.count("^")),
        float(text.count("def ") + text.count("{") + text.count("()")),
    ]


def feature_matrix(texts: list[str]) -> npt.NDArray[np.float64]:
    return np.array([text_features(t) for t in texts], dtype=np.float64).reshape(
        len(texts), len(FEATURE_NAMES)
    )

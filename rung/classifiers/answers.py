"""Reading an answer: cheap, task-aware features of a model's answer text for the answer
verifier, and the answer's final result (a number, an option letter) so that two tiers' answers
can be compared. Pure functions; regular expressions and counting only (no model call).

Parsers for the shapes answers come in: a JSON object with an "answer" field (the shape the
public math evaluations ask for), "The answer is (X)" (multiple choice), a final number in free
text, a fenced code block, a whole-JSON answer; anything else gets the generic features only.
Every feature is defined for every answer (a parser that finds nothing says so in a flag), so one
feature vector serves every task, including ones never trained on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

FEATURES: tuple[str, ...] = (
    "log_chars",
    "chars_vs_prompt",
    "lines",
    "corrections",
    "hedges",
    "refusal",
    "numbers",
    "equals",
    "truncated",
    "json_answer",
    "json_answers",
    "json_answers_differ",
    "after_json",
    "number_found",
    "number_integer",
    "number_in_reasoning",
    "number_is_last",
    "number_log_magnitude",
    "number_negative",
    "answer_words",
    "prompt_numbers_used",
    "prompt_numbers_missing",
    "equations",
    "equations_wrong",
    "choice_found",
    "choice_letters",
    "choice_repeats",
    "options_mentioned",
    "choice_text_in_answer",
    "other_options_in_answer",
    "choice_numeric",
    "choice_number_in_reasoning",
    "choice_nearest_last_number",
    "code_block",
    "whole_json",
)

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CORRECTION = re.compile(
    r"\b(?:wait|mistake|actually|re-?evaluat\w*|recheck\w*|re-?calculat\w*|oops|incorrect"
    r"|reconsider\w*|let me re\w*|i made an? \w+|that'?s not right)\b",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(?:approximately|assum\w*|roughly|estimate\w*|likely|probably|not sure|unclear"
    r"|cannot be determined|can'?t be determined)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:I (?:cannot|can'?t|am unable to|won'?t) (?:help|answer|assist|provide)|as an AI)\b",
    re.IGNORECASE,
)
_JSON_ANSWER = re.compile(r'"answer"\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|([^,\n}]*))')
_CHOICE = re.compile(r"answer is:?\s*\(?([A-J])\)?(?![A-Za-z])")
_OPTION = re.compile(r"\(([A-J])\)")
_PROMPT_OPTION = re.compile(r"^\(?([A-J])[.)]\s+(.+?)\s*$", re.MULTILINE)
_NOT_WORD = re.compile(r"[^a-z0-9.]+")
_EQUATION = re.compile(
    r"((?:-?\$?\d[\d,]*(?:\.\d+)?\s*[-+*/×÷x]\s*)+\$?\d[\d,]*(?:\.\d+)?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)"
)
_ARITHMETIC = re.compile(r"[\d.\s+\-*/()]+")


@dataclass(frozen=True)
class Reading:
    """What one answer says: its feature vector (FEATURES order) and its final result."""

    features: tuple[float, ...]
    result: str | None
    """The final answer in a comparable form (a number's canonical text, an option letter), or
    None when no parser found one."""


def number(text: str | None) -> float | None:
    if not text:
        return None
    found = _NUMBER.search(text.replace("$", ""))
    if found is None:
        return None
    try:
        return float(found.group(0).replace(",", ""))
    except ValueError:
        return None


def _numbers(text: str) -> list[float]:
    out = []
    for token in _NUMBER.findall(text):
        try:
            out.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return out


def equations(text: str) -> tuple[int, int]:
    """(checkable equations `a op b ... = c`, wrong ones): arithmetic a model got wrong."""
    found = wrong = 0
    for left, right in _EQUATION.findall(text):
        expression = left.replace(",", "").replace("$", "").replace("×", "*").replace("÷", "/")
        expression = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", expression)
        if not _ARITHMETIC.fullmatch(expression):
            continue
        value = _evaluate(expression)
        if value is None:
            continue
        try:
            target = float(right.replace(",", ""))
        except ValueError:
            continue
        found += 1
        if abs(value - target) > max(1e-6, 0.01 * abs(target)):
            wrong += 1
    return found, wrong


def _evaluate(expression: str) -> float | None:
    """+ - * / over numbers, left to right with precedence: a tiny parser, never eval()."""
    tokens = re.findall(r"\d+(?:\.\d+)?|[-+*/]", expression)
    if not tokens:
        return None
    try:
        terms: list[float] = []
        sign, i = 1.0, 0
        while i < len(tokens):
            if tokens[i] in "+-" and (i == 0 or tokens[i - 1] in "+-*/"):
                sign = -sign if tokens[i] == "-" else sign
                i += 1
                continue
            value = sign * float(tokens[i])
            sign, i = 1.0, i + 1
            while i + 1 < len(tokens) and tokens[i] in "*/":
                operand = float(tokens[i + 1])
                value = value * operand if tokens[i] == "*" else value / operand
                i += 2
            terms.append(value)
            if i < len(tokens):
                if tokens[i] not in "+-":
                    return None
                sign = -1.0 if tokens[i] == "-" else 1.0
                i += 1
        return sum(terms)
    except (ValueError, ZeroDivisionError, IndexError):
        return None


def _words(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def choice_features(text: str, prompt: str, letter: str | None) -> tuple[float, ...]:
    """Whether a multiple-choice answer's reasoning supports the option it picked: the option's
    text appears in the reasoning, other options' texts do (weighing several), the option is a
    number and that number was computed, the last number computed is nearest to it. Zero when
    the prompt lists no options or the answer picked none."""
    options = dict(_PROMPT_OPTION.findall(prompt))
    if letter is None or letter not in options:
        return (0.0, 0.0, 0.0, 0.0, 0.0)
    reasoning = text.rsplit("answer is", 1)[0]
    body = _words(reasoning)
    named = {k: _words(o) for k, o in options.items()}
    chosen = named[letter]
    others = sum(1 for k, o in named.items() if k != letter and len(o) >= 3 and o in body)
    values = {k: _numbers(o) for k, o in options.items()}
    computed = _numbers(reasoning)
    picked = values[letter][0] if values[letter] else None
    found = picked is not None and any(
        abs(x - picked) <= max(1e-6, 0.005 * abs(picked)) for x in computed
    )
    nearest = False
    if picked is not None and computed:
        distance = {k: abs(v[0] - computed[-1]) for k, v in values.items() if v}
        nearest = min(distance, key=lambda k: (distance[k], k != letter)) == letter
    return (
        float(len(chosen) >= 2 and chosen in body),
        float(min(others, 5)),
        float(picked is not None),
        float(found),
        float(nearest),
    )


def _canonical(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.6g}"


def read(text: str, prompt: str = "", finish_reason: str | None = None) -> Reading:
    """The features and final result of one answer to `prompt`."""
    t = text or ""
    chars = len(t)
    json_answers = [quoted or bare for quoted, bare in _JSON_ANSWER.findall(t)]
    head = t.split('"answer"', 1)[0] if json_answers else t
    final_text = json_answers[0].strip() if json_answers else None
    if final_text is None:  # free text: the last number is the usual final answer
        found = _NUMBER.findall(t[-300:])
        final_text = found[-1] if found else None
    value = number(final_text)
    reasoning = _numbers(head if json_answers else t[: max(0, len(t) - 40)])
    prompt_numbers = {round(x, 6) for x in _numbers(prompt)}
    used = {round(x, 6) for x in reasoning}
    letters = _CHOICE.findall(t)
    checked, wrong = equations(head)
    stripped = t.strip()
    features = (
        math.log1p(chars),
        math.log1p(chars) - math.log1p(len(prompt)),
        math.log1p(t.count("\n")),
        float(min(len(_CORRECTION.findall(t)), 5)),
        float(min(len(_HEDGE.findall(t)), 5)),
        float(bool(_REFUSAL.search(t[:400]))),
        math.log1p(len(_NUMBER.findall(t))),
        math.log1p(t.count("=")),
        float(finish_reason == "length"),
        float(bool(json_answers)),
        float(min(len(json_answers), 3)),
        float(len({number(a) for a in json_answers}) > 1),
        math.log1p(len(t.rsplit("}", 1)[-1].strip(" `\n"))) if json_answers else 0.0,
        float(value is not None),
        float(value is not None and value == int(value)),
        float(value is not None and any(abs(x - value) < 1e-6 for x in reasoning)),
        float(value is not None and bool(reasoning) and abs(reasoning[-1] - value) < 1e-6),
        math.log1p(abs(value)) if value is not None else 0.0,
        float(value is not None and value < 0),
        math.log1p(len((json_answers[0] if json_answers else "").split())),
        len(prompt_numbers & used) / len(prompt_numbers) if prompt_numbers else 1.0,
        float(min(len(prompt_numbers - used), 10)),
        math.log1p(checked),
        float(min(wrong, 3)),
        float(bool(letters)),
        float(len(set(letters))),
        float(min(len(letters), 5)),
        math.log1p(len(_OPTION.findall(t))),
        *choice_features(t, prompt, letters[-1] if letters else None),
        float("```" in t and not t.lstrip().startswith("```json")),
        float(stripped.startswith("{") and stripped.endswith("}")),
    )
    return Reading(features, _result(letters, json_answers, value))


_PLAIN_NUMBER = re.compile(r"\$?\s*-?[\d,]*\.?\d+\s*[a-zA-Z%]*\.?")


def _result(letters: list[str], json_answers: list[str], value: float | None) -> str | None:
    if letters:
        return letters[-1]
    if json_answers:
        raw = json_answers[0].strip()
        if value is not None and _PLAIN_NUMBER.fullmatch(raw):
            return _canonical(value)
        return " ".join(raw.lower().split()) or None  # e.g. \\frac{3}{4}: compared as text
    return _canonical(value) if value is not None else None

"""The near-miss guard: a semantic match is served only if the salient parts of the two texts
agree.

Sentence embeddings barely move when one number or name changes ("16 eggs" vs "17 eggs" embed at
cosine ~0.99), yet the answer does. So above the similarity threshold, rung still compares what
an embedding blurs and refuses the match when any of these differ:

- numbers (digits, with `1,000` = `1000` and `2.50` = `2.5`; number words up to twenty and the
  round tens and ordinals are read as digits, so "sixteen" = "16" and "first" = "1st"), as a
  multiset; and words with digits inside (`ryzen5`, `E404`, `python2`, `mp3`), case-folded;
- option letters: `(B)`, "option B", "answer C", or a lone capital letter other than A and I;
- quoted strings ("…", '…', “…”) and code (`…` and ``` blocks), whitespace-normalised;
- negation: how many negating words there are (not, no, non-, never, none, nothing, nobody,
  neither, nor, without, cannot, -n't), so "Which is not a mammal" never gets "Which is a
  mammal"'s answer;
- names and entities: capitalised words that do not start a sentence, and all-caps words
  (acronyms), case-folded, in order of first appearance ("Is NASA older than ESA?" is not
  "Is ESA older than NASA?");
- enumerated choices (two or more lines like "A. …" or "1) …"): every option's text, in order.

Pure and table-tested (tests/unit/test_guard.py); what it costs in lost true hits is measured by
bench/cache_quality.py.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1000000, "half": 0.5, "twice": 2, "double": 2, "triple": 3,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3,
}  # fmt: skip
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?|\b(?:" + "|".join(_WORDS) + r")\b", re.I)
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_DIGIT_WORD = re.compile(r"\b(?=\w*[A-Za-z_])(?=\w*\d)\w+\b")
_LETTER = re.compile(
    r"\(([A-J])\)|\b(?:option|answer|choice|letter)\s+([A-J])\b|(?<![\w'])([B-HJ])(?![\w'])", re.I
)
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”|(?<!\w)'([^'\n]{1,200})'(?!\w)")
_NEGATION = re.compile(
    r"\b(?:not|no|non|never|none|nothing|nobody|neither|nor|without|cannot)\b|n't\b", re.I
)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*|[.!?:;\n]")
_COMMON_WORDS = (
    "i a an the what which who whom whose when where why how is are was were do does did can "
    "could would should will shall may might must if in on at of for to and or but by from with "
    "as this that these those it its there their they he she we you your my our his her let "
    "given suppose assume consider find compute calculate determine explain describe answer "
    "question options option select choose true false"
)
_COMMON = frozenset(_COMMON_WORDS.split())


_CHOICE = re.compile(r"^\s*\(?([A-Za-z]|\d{1,2})[.)]\s+(.+?)\s*$", re.M)


@dataclass(frozen=True)
class Salient:
    numbers: tuple[str, ...]
    quoted: frozenset[str]
    code: frozenset[str]
    negations: int
    entities: tuple[str, ...]
    """In order of appearance: "Is NASA older than ESA?" is not "Is ESA older than NASA?"."""
    choices: tuple[str, ...] = ()
    alnum: tuple[str, ...] = ()
    """Words with digits inside, case-folded and sorted."""
    letters: tuple[str, ...] = ()
    """Option letters, in order."""


def _number(token: str) -> str:
    word = _WORDS.get(token.lower())
    if word is not None:
        value = float(word)
    else:
        try:
            value = float(token.replace(",", ""))
        except ValueError:
            return token
    return f"{value:g}" if abs(value) < 1e15 else token


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def salient(text: str) -> Salient:
    code = frozenset(_squash(m.group(0).strip("`")) for m in _CODE.finditer(text))
    prose = _CODE.sub(" ", text)
    quoted = frozenset(_squash(next(g for g in m.groups() if g)) for m in _QUOTED.finditer(prose))
    numbers = tuple(sorted(_number(m.group(0)) for m in _NUMBER.finditer(prose)))
    entities: list[str] = []
    sentence_start = True
    for token in _TOKEN.findall(prose):
        if token in ".!?:;\n":
            sentence_start = True
            continue
        word = token.removesuffix("'s").removesuffix("'")  # France's = France
        name = (word.isupper() and len(word) > 1) or (
            word[0].isupper() and not sentence_start and word.casefold() not in _COMMON
        )
        if name and word.casefold() not in entities:
            entities.append(word.casefold())
        sentence_start = False
    lines = _CHOICE.findall(prose)
    choices = tuple(_squash(option) for _, option in lines) if len(lines) >= 2 else ()
    negations = len(_NEGATION.findall(prose))
    alnum = tuple(sorted(m.group(0).casefold() for m in _DIGIT_WORD.finditer(prose)))
    letters = tuple(
        next(g for g in m.groups() if g).upper()
        for m in _LETTER.finditer(prose)
        if m.group(3) is None or m.group(3).isupper()
    )
    return Salient(numbers, quoted, code, negations, tuple(entities), choices, alnum, letters)


def disagreement(a: Salient, b: Salient) -> str | None:
    """The first salient part on which the two texts differ, or None when they agree."""
    if Counter(a.numbers) != Counter(b.numbers) or a.alnum != b.alnum:
        return "numbers"
    if a.letters != b.letters:
        return "letters"
    if a.quoted != b.quoted:
        return "quoted"
    if a.code != b.code:
        return "code"
    if a.negations != b.negations:
        return "negation"
    if a.entities != b.entities:
        return "entities"
    if a.choices != b.choices:
        return "choices"
    return None


def near_miss(a: str, b: str) -> str | None:
    """Why a semantic match between these texts must not be served (None: it may be)."""
    return disagreement(salient(a), salient(b))

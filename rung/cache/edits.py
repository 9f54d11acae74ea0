"""Rule-made question pairs for fitting and measuring the cache's hit verifier.

Near misses (one cached answer is wrong for the other question): a number or the digits inside a
word changed, a unit, a date word, a programming language, an antonym or sibling word swapped
in, a negation added, the two sides of "X to Y" swapped, another option letter. Paraphrases
(the same answer is right): contractions, casing and punctuation, a polite prefix, a common
rewording of the question's opening.

Every list of words comes in two disjoint halves: `train` edits (what the verifier is fitted and
calibrated on) and `test` edits (what it is measured on), so a measured figure never comes from
the word lists the verifier saw. Pure and deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

Half = Literal["train", "test"]

# (word, replacement) pairs; each list is split by position: even -> train, odd -> test.
_SWAPS: dict[str, list[tuple[str, str]]] = {
    "antonym": [
        ("best", "worst"), ("buy", "sell"), ("increase", "decrease"), ("raise", "lower"),
        ("cheap", "expensive"), ("fast", "slow"), ("hot", "cold"), ("before", "after"),
        ("start", "stop"), ("open", "close"), ("win", "lose"), ("maximum", "minimum"),
        ("add", "remove"), ("gain", "drop"), ("upload", "download"), ("import", "export"),
        ("positive", "negative"), ("rich", "poor"), ("high", "low"), ("strong", "weak"),
        ("long", "short"), ("easy", "hard"), ("good", "bad"), ("more", "less"),
        ("first", "last"), ("inside", "outside"), ("male", "female"), ("up", "down"),
        ("enable", "disable"), ("encrypt", "decrypt"), ("legal", "illegal"), ("safe", "dangerous"),
        ("young", "old"), ("early", "late"), ("love", "hate"), ("accept", "reject"),
        ("left", "right"), ("north", "south"), ("east", "west"), ("light", "dark"),
    ],
    "unit": [
        ("mg", "g"), ("km", "miles"), ("celsius", "fahrenheit"), ("kg", "pounds"),
        ("meters", "feet"), ("liters", "gallons"), ("inches", "centimeters"), ("hours", "minutes"),
        ("dollars", "euros"), ("mb", "gb"), ("seconds", "milliseconds"), ("grams", "ounces"),
        ("ml", "l"), ("kb", "mb"), ("days", "weeks"), ("years", "months"),
    ],
    "date": [
        ("yesterday", "today"), ("tomorrow", "tonight"), ("monday", "friday"),
        ("january", "july"), ("morning", "evening"), ("weekend", "weekday"),
        ("tuesday", "sunday"), ("march", "october"), ("summer", "winter"), ("spring", "autumn"),
        ("night", "day"), ("april", "december"),
    ],
    "language": [
        ("python", "java"), ("javascript", "ruby"), ("c++", "rust"), ("php", "go"),
        ("english", "spanish"), ("french", "german"), ("swift", "kotlin"), ("hindi", "tamil"),
        ("sql", "mongodb"), ("chinese", "japanese"), ("linux", "windows"), ("android", "ios"),
        ("react", "angular"), ("excel", "word"), ("iphone", "samsung"), ("mac", "pc"),
    ],
    "sibling": [
        ("cat", "dog"), ("apple", "orange"), ("husband", "wife"), ("son", "daughter"),
        ("car", "bike"), ("tea", "coffee"), ("doctor", "nurse"), ("lion", "tiger"),
        ("teacher", "student"), ("engineer", "lawyer"), ("india", "pakistan"),
        ("america", "canada"), ("bitcoin", "ethereum"), ("facebook", "twitter"),
        ("google", "amazon"), ("book", "movie"), ("mother", "father"), ("brother", "sister"),
        ("rice", "bread"), ("milk", "juice"), ("piano", "guitar"), ("football", "cricket"),
    ],
}  # fmt: skip
_REWORDINGS = [
    ("how do i", "how can i"), ("what is", "what's"), ("what are some", "what are"),
    ("how can i", "what is the way to"), ("do not", "don't"), ("is it possible to", "can i"),
    ("what is the best way to", "how do i best"), ("how does one", "how do you"),
    ("i am", "i'm"), ("cannot", "can't"), ("what are the", "which are the"),
    ("where can i", "where do i"), ("does not", "doesn't"), ("is there any", "is there a"),
]  # fmt: skip
_PREFIXES = ["Please tell me: ", "Quick question: ", "Can you answer this? ", "Hi! ",
             "I was wondering, ", "Question: "]  # fmt: skip
_CONNECTORS = {"train": "to|vs|than|and", "test": "into|versus|over|or"}
_NUMBER = re.compile(r"\d+")
_LETTER = re.compile(r"\b(option|answer|choice) ([A-E])\b", re.I)
_NEGATABLE = re.compile(r"\b(is|are|was|were|can|does|do|should|will)\b", re.I)


def _half(items: list[tuple[str, str]], half: Half) -> list[tuple[str, str]]:
    return items[0::2] if half == "train" else items[1::2]


def _replace_word(text: str, old: str, new: str) -> str | None:
    pattern = re.compile(rf"(?<![\w+#]){re.escape(old)}(?![\w+#])", re.I)
    if not pattern.search(text):
        return None

    def keep_case(m: re.Match[str]) -> str:
        word = m.group(0)
        return new.capitalize() if word[:1].isupper() else new

    return pattern.sub(keep_case, text, count=1)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str
    """`rule-<edit>` (near misses) or `rewrite-<edit>` (paraphrases)."""


Edit = Callable[[str, random.Random, Half], str | None]


def _swap(kind: str) -> Edit:
    def edit(text: str, rng: random.Random, half: Half) -> str | None:
        pairs = _half(_SWAPS[kind], half)
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for i in order:
            for old, new in (pairs[i], pairs[i][::-1]):
                if _replace_word(text, new, new) is not None:
                    continue  # "km to miles" must not become "km to km"
                changed = _replace_word(text, old, new)
                if changed is not None and changed != text:
                    return changed
        return None

    return edit


def _number(text: str, rng: random.Random, half: Half) -> str | None:
    found = list(_NUMBER.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    value = int(m.group(0))
    # train edits add small steps, test edits multiply: different perturbations.
    new = value + rng.choice([1, 2, 3]) if half == "train" else value * 2 + 1
    return text[: m.start()] + str(new) + text[m.end() :]


def _order(text: str, rng: random.Random, half: Half) -> str | None:
    pattern = re.compile(rf"\b([a-z][\w+#.-]*) ({_CONNECTORS[half]}) ([a-z][\w+#.-]*)\b")
    found = [m for m in pattern.finditer(text) if m.group(1) != m.group(3)]
    if not found:
        return None
    m = rng.choice(found)
    return text[: m.start()] + f"{m.group(3)} {m.group(2)} {m.group(1)}" + text[m.end() :]


def _negate(text: str, rng: random.Random, half: Half) -> str | None:
    found = list(_NEGATABLE.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    word = m.group(0)
    negated = (
        f"{word} not" if half == "train" else f"{word}n't" if word.lower() != "can" else "cannot"
    )
    return text[: m.start()] + negated + text[m.end() :]


def _letter(text: str, rng: random.Random, half: Half) -> str | None:
    m = _LETTER.search(text)
    if m is None:
        return None
    letters = [c for c in "ABCDE" if c != m.group(2).upper()]
    return text[: m.start(2)] + rng.choice(letters) + text[m.end(2) :]


def _reword(text: str, rng: random.Random, half: Half) -> str | None:
    pairs = _half(_REWORDINGS, half)
    lower = text.lower()
    for old, new in rng.sample(pairs, len(pairs)):
        for x, y in ((old, new), (new, old)):
            at = lower.find(x)
            if at >= 0 and (at == 0 or not lower[at - 1].isalnum()):
                piece = y.capitalize() if text[at : at + 1].isupper() else y
                return text[:at] + piece + text[at + len(x) :]
    return None


def _surface(text: str, rng: random.Random, half: Half) -> str | None:
    if half == "train":
        return text.rstrip("?").rstrip() if text.endswith("?") else text + "?"
    return text.lower() if text != text.lower() else text.capitalize()


def _prefix(text: str, rng: random.Random, half: Half) -> str | None:
    options = _PREFIXES[0::2] if half == "train" else _PREFIXES[1::2]
    return rng.choice(options) + text[:1].lower() + text[1:]


NEAR_MISSES: dict[str, Edit] = {
    "antonym": _swap("antonym"),
    "unit": _swap("unit"),
    "date": _swap("date"),
    "language": _swap("language"),
    "sibling": _swap("sibling"),
    "number": _number,
    "order": _order,
    "negation": _negate,
    "letter": _letter,
}
PARAPHRASES: dict[str, Edit] = {"reword": _reword, "surface": _surface, "prefix": _prefix}


def generate(questions: list[str], half: Half, seed: int = 0) -> Iterator[Pair]:
    """Every edit that applies to each question, once: near misses and paraphrases."""
    rng = random.Random(seed)
    for question in questions:
        for name, edit in NEAR_MISSES.items():
            changed = edit(question, rng, half)
            if changed is not None and changed.strip() != question.strip():
                yield Pair(question, changed, False, f"rule-{name}")
        for name, edit in PARAPHRASES.items():
            changed = edit(question, rng, half)
            if changed is not None and changed.strip() != question.strip():
                yield Pair(question, changed, True, f"rewrite-{name}")

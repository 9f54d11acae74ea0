"""The docs cannot drift from the code: every config key docs/config.md documents is a field of
the pydantic models, and every `--flag` the README and docs show on a `rung` command line is an
option the argparse parser knows."""

from __future__ import annotations

import argparse
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from rung.cli import build_parser
from rung.config import RungConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (through Optional, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models(arg)
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            out += _models(arg)
    return out


def paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, info in model.model_fields.items():
        here = f"{prefix}{name}"
        found.add(here)
        nested = _models(info.annotation)
        for sub in nested:
            is_list = typing.get_origin(info.annotation) is list
            found |= paths(sub, f"{here}[]." if is_list else f"{here}.")
    return found


def test_every_config_key_in_docs_config_md_exists() -> None:
    known = paths(RungConfig)
    # A key may be documented relative to its section (`host` under `server`) or to a list
    # item (`url` of a tier's backend): accept it when some full path ends with it.
    suffixes = {p.split(".", i)[-1] for p in known for i in range(p.count(".") + 1)}
    suffixes |= {s.replace("[]", "") for s in suffixes}
    text = (ROOT / "docs" / "config.md").read_text()
    documented = re.findall(r"^\| `([a-z_][a-z_.\[\]]*)` \|", text, re.M)
    assert len(documented) > 50
    missing = sorted(k for k in documented if k not in suffixes)
    assert not missing, f"docs/config.md documents keys the config does not have: {missing}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found = {s for action in parser._actions for s in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def test_every_rung_flag_in_the_docs_exists() -> None:
    known = _options(build_parser())
    shown: set[tuple[str, str]] = set()
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if re.search(r"\brung (serve|up|train|eval|label|calibrate|cache|models|keys|usage|"
                         r"config|demo)\b", line):  # fmt: skip
                shown |= {
                    (doc.name, flag) for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line)
                }
    assert len(shown) > 10
    unknown = sorted((name, flag) for name, flag in shown if flag not in known)
    assert not unknown, f"flags shown on rung command lines that rung does not have: {unknown}"

"""Read the admin YAML file: `${ENV}` interpolation, then validation with errors that name the
file, the key path and what was expected."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rung.config.models import RungConfig
from rung.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: Mapping[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Replace `${NAME}` / `${NAME:-default}` in every string; return the tree and the problems."""
    problems: list[str] = []
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, node), problems
    if isinstance(node, list):
        out = []
        for i, item in enumerate(node):
            value, more = interpolate(item, env, f"{path}[{i}]")
            out.append(value)
            problems += more
        return out, problems
    if isinstance(node, dict):
        result = {}
        for key, item in node.items():
            value, more = interpolate(item, env, f"{path}.{key}" if path else str(key))
            result[key] = value
            problems += more
        return result, problems
    return node, problems


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


_SECRET_NAMES = ("key", "secret", "password", "token", "redis_url")


def _may_be_secret(loc: tuple[int | str, ...], value: object) -> bool:
    """Not echoed in an error: values of keys that hold secrets, and URLs with credentials."""
    name = next((str(part).lower() for part in reversed(loc) if isinstance(part, str)), "")
    if any(word in name for word in _SECRET_NAMES):
        return True
    return isinstance(value, str) and "://" in value and "@" in value


def format_validation_error(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = _key_path(tuple(item["loc"]))
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key (check its spelling)")
            continue
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        hidden = isinstance(got, dict | list) or got is None or _may_be_secret(item["loc"], got)
        shown = "" if hidden else f" (got {got!r})"
        problems.append(f"{where}: {message}{shown}")
    return problems


def parse_config(data: Any, source: str, env: Mapping[str, str] | None = None) -> RungConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping of settings at the top level"])
    tree, problems = interpolate(data, os.environ if env is None else env)
    if problems:
        raise ConfigError(source, problems)
    try:
        return RungConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> RungConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            source, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    return parse_config(data, source, env)

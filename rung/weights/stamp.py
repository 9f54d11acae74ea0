"""Files rung derives from packaged weights once per machine (the static table, the quantized
MiniLM), each with a sha256 stamp beside it, checked on every load: a torn or edited file is
rebuilt, never used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def intact(path: Path) -> bool:
    """The file exists and its bytes are the ones its stamp recorded."""
    stamp = stamp_path(path)
    if not path.exists() or not stamp.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("sha256") == file_sha256(path)


def seal(partial: Path, path: Path, record: dict[str, Any]) -> None:
    """Move a finished `partial` file to `path` (atomically) and write its stamp."""
    stamped = {"sha256": file_sha256(partial), **record}
    partial.replace(path)
    stamp_path(path).write_text(json.dumps(stamped) + "\n")

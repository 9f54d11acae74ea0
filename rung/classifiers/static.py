"""A static (model2vec-style) embedder distilled from the packaged MiniLM: the serving default.

Distillation, once per machine (about a minute on 2 cores, with a progress bar): every
vocabulary token goes through MiniLM alone (`[CLS] token [SEP]`) and its mean-pooled output
becomes that token's row; the rows are centred and rotated onto their principal axes (PCA, as
model2vec does), then weighted by log(1 + vocabulary rank) (model2vec's Zipf weighting: WordPiece
ids roughly follow frequency, so frequent, uninformative tokens count less). A text's vector is
the mean of its tokens' rows, L2-normalised: a tokenizer call and a table lookup, ~50 us, cheap
enough to run on the event loop.

The table is written next to the other models (`static-minilm-l6.npy`) with a sha256 stamp and
checked on every load. Its identity, which classifiers and cache calibrations record, is the
recipe plus the teacher's sha256, not the table's bytes, so the same distillation on another CPU
(last-bit float differences) still loads the same classifiers.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rung.classifiers.embedder import Matrix, OnnxEmbedder, bundled_tokenizer
from rung.weights.stamp import intact, seal

NAME = "static-minilm-l6"
RECIPE = "static-minilm-l6/1: mean-pooled token rows, centred, PCA to 256, log(1+rank) weights"
DIMENSION = 256
"""model2vec's default: bench/static_embedder.py found 256 routes as well as all 384 axes."""
TEACHER = "minilm-l6-int8"
FILENAME = "static-minilm-l6.npy"
MAX_TOKENS = 512
"""Tokens of a text that count (more cost time and say little more about it)."""
MAX_CHARS = 8192
"""Characters tokenized at most: bounds the work one huge prompt can cause."""
_CLS, _SEP = 101, 102


def identity(teacher_sha256: str) -> dict[str, str]:
    digest = hashlib.sha256(f"{RECIPE}\0{teacher_sha256}".encode()).hexdigest()
    return {"name": NAME, "sha256": digest}


def distil(teacher: OnnxEmbedder, progress: Callable[[int], object] | None = None) -> Matrix:
    """The finished table [vocabulary, 256]: token rows through the teacher, then PCA + weights."""
    vocab = teacher.vocabulary_size
    batch = 512
    rows = []
    for start in range(0, vocab, batch):
        ids = np.arange(start, min(start + batch, vocab), dtype=np.int64)
        tokens = np.stack([np.full_like(ids, _CLS), ids, np.full_like(ids, _SEP)], axis=1)
        rows.append(teacher.hidden(tokens).mean(axis=1))
        if progress is not None:
            progress(len(ids))
    return finish(np.concatenate(rows).astype(np.float64))


def finish(raw: np.ndarray) -> Matrix:
    centred = raw - raw.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ axes[:DIMENSION].T
    # A deterministic sign per axis, so two distillations agree row for row.
    rotated *= np.where(rotated[np.abs(rotated).argmax(axis=0), range(rotated.shape[1])] < 0, -1, 1)
    weights = np.log1p(np.arange(len(rotated), dtype=np.float64))[:, None]
    table: Matrix = (rotated * weights).astype(np.float32)
    return table


class StaticEmbedder:
    """Texts -> mean of their tokens' rows, L2-normalised."""

    inline = True
    """Fast enough to call on the event loop (no worker thread, no micro-batching)."""

    def __init__(self, table: Matrix, name: str = NAME, tokenizer_path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.name = name
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path or bundled_tokenizer()))
        self._tokenizer.no_padding()
        # Bounded by MAX_CHARS already; slicing the ids is cheaper than the tokenizer's own
        # truncation, and without [CLS]/[SEP] and offsets (`encode_batch_fast`, tokenizers
        # >= 0.20) a short question tokenizes in ~25 us instead of ~45.
        self._tokenizer.no_truncation()
        fast = getattr(self._tokenizer, "encode_batch_fast", None)
        self._encode = fast if fast is not None else self._tokenizer.encode_batch

    @property
    def dimension(self) -> int:
        return int(self.table.shape[1])

    def token_ids(self, text: str) -> list[int]:
        ids: list[int] = self._encode([text[:MAX_CHARS]], add_special_tokens=False)[0].ids
        return ids[:MAX_TOKENS]

    def embed(self, texts: list[str]) -> Matrix:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self.token_ids(text)
            if not ids:
                continue
            # The sum points where the mean does (the row is normalised), at a third the cost.
            vector = np.add.reduce(self.table[ids], axis=0)
            norm = math.sqrt(float(vector @ vector))
            if norm > 0:
                out[row] = vector / norm
        return out


def load_table(path: Path) -> Matrix | None:
    """The cached table if it is intact (its sha256 stamp matches), else None."""
    if not intact(path):
        return None
    table: Matrix = np.load(path, allow_pickle=False)
    return table


def build_table(teacher: OnnxEmbedder, path: Path, teacher_sha256: str) -> Matrix:
    """Distil and write the table (atomically, with its stamp); shows a progress bar."""
    from tqdm import tqdm

    with tqdm(
        total=teacher.vocabulary_size,
        desc="distilling the static embedder (once)",
        unit="token",
        unit_scale=True,
        file=sys.stderr,
        disable=None,
    ) as bar:
        table = distil(teacher, bar.update)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npy")
    np.save(partial, table)
    seal(partial, path, {"recipe": RECIPE, "teacher": teacher_sha256})
    return table


def open_static(
    teacher_path: Path, teacher_sha256: str, models_dir: Path, allow_build: bool = True
) -> StaticEmbedder:
    path = models_dir / FILENAME
    table = load_table(path)
    if table is None:
        if not allow_build:
            raise FileNotFoundError(
                f"embedder {NAME} is not built yet: run `rung models fetch` (distils it once)"
            )
        table = build_table(OnnxEmbedder(teacher_path, threads=2), path, teacher_sha256)
    return StaticEmbedder(table)

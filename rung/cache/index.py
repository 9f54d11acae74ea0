"""The in-process vector index of one tenant's scope: exact below a size, HNSW above it.

Exact search is a numpy matrix-vector product: ~6 ms over 100k vectors on an idle core (23 ms
under load), too slow for a per-request lookup at that size. From `ann_min` live vectors on, a
faiss HNSW graph (inner product on unit vectors = cosine) answers in ~0.5 ms; it is built on a
worker thread while exact search keeps serving, then swapped in. Later vectors are inserted
into the graph as they come (HNSW grows incrementally); removed keys are filtered out of
results, and the graph is rebuilt over the live vectors alone (compacted) when removed ones
reach a quarter of it, so memory follows the live entries. Thread-safe: one lock guards
every structure.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


class ScopeIndex:
    def __init__(self, dimension: int, ann_min: int = 4096, background: bool = True) -> None:
        self.dimension = dimension
        self.ann_min = ann_min
        self.background = background
        self._lock = threading.Lock()
        self._matrix = np.zeros((16, dimension), dtype=np.float32)
        self._keys: list[str | None] = []
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self._graph: Any = None  # faiss index over rows [0, _built)
        self._built = 0
        self._building = False
        self._stale = 0  # rows inside the graph whose key was removed or replaced
        self._changed: set[str] = set()  # keys re-added while a graph was being built

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, key: str, vector: Vector) -> None:
        with self._lock:
            if key in self._rows:
                self._remove(key)
            if self._building:
                self._changed.add(key)
            # Rows inside the graph are never reused: the graph would still point at them.
            row = self._free.pop() if self._free else len(self._keys)
            if row == len(self._keys):
                self._keys.append(None)
                if row >= len(self._matrix):
                    grown = np.zeros((len(self._matrix) * 2, self.dimension), dtype=np.float32)
                    grown[: len(self._matrix)] = self._matrix
                    self._matrix = grown
            self._matrix[row] = vector
            self._keys[row] = key
            self._rows[key] = row
            if self._graph is not None and not self._building and row == self._built:
                self._graph.add(self._matrix[row : row + 1])  # HNSW inserts incrementally
                self._built += 1
            build = (
                not self._building
                and len(self._rows) >= self.ann_min
                and (self._graph is None or self._stale > self._built // 4)
            )
            if build:
                self._building = True
        if build:
            if self.background:
                threading.Thread(target=self._build, daemon=True).start()
            else:
                self._build()

    def remove(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def _remove(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is None:
            return
        self._keys[row] = None
        self._matrix[row] = 0.0
        if row < self._built:
            self._stale += 1
        else:
            self._free.append(row)

    def _build(self) -> None:
        """Build a graph over the *live* vectors only, renumbered from 0: removed rows are
        dropped here, so memory stays proportional to the live entries however many come and
        go (evicted rows used to stay in the matrix and the graph forever)."""
        import faiss

        with self._lock:
            keys = [k for k in self._keys if k is not None]
            matrix = np.stack([self._matrix[self._rows[k]] for k in keys]) if keys else None
        graph = faiss.IndexHNSWFlat(self.dimension, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = 40
        graph.hnsw.efSearch = 64
        if matrix is not None:
            graph.add(matrix)
        with self._lock:
            snapshot = set(keys)
            # Keys added while the graph was built (or re-added with a new vector) join it now;
            # keys removed meanwhile become stale rows of the new graph.
            later = [k for k in self._rows if k not in snapshot or k in self._changed]
            order: list[str | None] = [k if k in self._rows and k not in later else None
                                       for k in keys]  # fmt: skip
            size = max(16, len(order) + len(later))
            fresh = np.zeros((size * 2, self.dimension), dtype=np.float32)
            if matrix is not None:
                fresh[: len(keys)] = matrix
            for offset, key in enumerate(later):
                fresh[len(order) + offset] = self._matrix[self._rows[key]]
            order += later
            if later:
                graph.add(fresh[len(keys) : len(order)])
            for row, slot in enumerate(order):
                if slot is None:
                    fresh[row] = 0.0
            self._matrix, self._keys = fresh, order
            self._rows = {k: i for i, k in enumerate(order) if k is not None}
            self._graph, self._built = graph, len(order)
            self._free = []
            self._stale = sum(1 for k in order if k is None)
            self._building = False
            self._changed.clear()

    def search(self, vector: Vector, k: int = 4) -> list[tuple[str, float]]:
        """The k most similar live keys with their cosine, best first."""
        with self._lock:
            found: dict[int, float] = {}
            tail_start = 0
            if self._graph is not None:
                scores, rows = self._graph.search(vector[None, :], k + min(self._stale, 64))
                for score, row in zip(scores[0], rows[0], strict=True):
                    if row >= 0 and self._keys[row] is not None:
                        found[int(row)] = float(score)
                tail_start = self._built
            tail = self._matrix[tail_start : len(self._keys)]
            if len(tail):
                sims = tail @ vector
                best = np.argsort(-sims)[:k]
                for row in best:
                    absolute = tail_start + int(row)
                    if self._keys[absolute] is not None:
                        found[absolute] = float(sims[row])
            ranked = sorted(found.items(), key=lambda item: -item[1])[:k]
            return [(str(self._keys[row]), score) for row, score in ranked]

"""The vector index: exact search, then HNSW past `ann_min`, with removals and rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

from rung.cache.index import ScopeIndex


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("ann_min", [10_000, 200])  # exact only; HNSW from 200 entries
def test_finds_the_nearest_live_key(ann_min: int) -> None:
    x = vectors(1000)
    index = ScopeIndex(32, ann_min=ann_min, background=False)
    for i, v in enumerate(x):
        index.add(f"k{i}", v)
    assert len(index) == 1000
    assert (index._graph is not None) == (ann_min == 200)
    hits = [index.search(x[i], 1)[0][0] for i in range(0, 1000, 37)]
    assert hits == [f"k{i}" for i in range(0, 1000, 37)]
    key, similarity = index.search(x[5], 1)[0]
    assert (key, round(similarity, 5)) == ("k5", 1.0)
    index.remove("k5")
    assert all(k != "k5" for k, _ in index.search(x[5], 4))
    index.add("k5", x[5])  # re-added after removal: found again
    assert index.search(x[5], 1)[0][0] == "k5"


def test_replacing_a_key_moves_it_and_many_removals_rebuild_the_graph() -> None:
    x = vectors(600, seed=1)
    index = ScopeIndex(32, ann_min=100, background=False)
    for i, v in enumerate(x[:400]):
        index.add(f"k{i}", v)
    index.add("k0", x[500])  # same key, new vector
    assert index.search(x[500], 1)[0][0] == "k0"
    assert all(k != "k0" for k, _ in index.search(x[0], 3))
    graph = index._graph
    for i in range(1, 200):
        index.remove(f"k{i}")
    index.add("new", x[599])  # a quarter of the graph is stale: rebuilt
    assert index._graph is not graph
    assert len(index) == 202
    assert index.search(x[300], 1)[0][0] == "k300"
    assert index.search(x[599], 1)[0][0] == "new"


def test_memory_follows_the_live_entries_under_churn():
    """Issue 13, defect 2: evicted rows stayed in the matrix and the graph forever, so a full
    cache kept growing by a vector (and its graph links) per request."""
    rng = np.random.default_rng(3)
    index = ScopeIndex(16, ann_min=200, background=False)
    live: list[str] = []
    for i in range(6000):
        v = rng.normal(size=16).astype(np.float32)
        index.add(f"k{i}", v / np.linalg.norm(v))
        live.append(f"k{i}")
        if len(live) > 500:  # a cache capped at 500 entries evicts its oldest
            index.remove(live.pop(0))
    assert len(index) == 500
    assert len(index._keys) <= 2 * 500  # rows: the live ones plus at most a quarter stale
    assert index._graph.ntotal <= 2 * 500
    v = index._matrix[index._rows["k5999"]]
    assert index.search(v, 1)[0][0] == "k5999"
    assert all(key in set(live) for key, _ in index.search(v, 10))

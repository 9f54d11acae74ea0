"""The micro-batcher with a deterministic stand-in model (the model itself is tested in
test_embedder.py): what matters here is who gets which row, and how calls are grouped."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from rung.classifiers.batcher import MicroBatcher


class SlowEmbedder:
    name = "stand-in"

    def __init__(self, seconds: float = 0.01, fail: bool = False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.sizes: list[int] = []
        self.threads: set[str] = set()

    def embed(self, texts: list[str]) -> np.ndarray:
        self.sizes.append(len(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("model exploded")
        return np.array([[float(len(t)), float(i)] for i, t in enumerate(texts)], dtype=np.float32)


async def test_concurrent_callers_share_batches_and_get_their_own_rows():
    model = SlowEmbedder()
    batcher = MicroBatcher(model, max_batch=32, max_wait_s=0.002)
    try:
        texts = ["x" * n for n in range(1, 65)]
        rows = await asyncio.gather(*(batcher.embed(t) for t in texts))
    finally:
        batcher.close()
    assert [int(r[0]) for r in rows] == list(range(1, 65))
    assert sum(model.sizes) == 64
    assert max(model.sizes) == 8  # collected up to 32, run in length-sorted groups of 8
    assert len(model.sizes) <= 16
    assert model.threads == {"rung-embedder"}  # never the event loop's thread


async def test_a_lone_caller_waits_at_most_max_wait():
    model = SlowEmbedder(seconds=0)
    batcher = MicroBatcher(model, max_batch=32, max_wait_s=0.002)
    try:
        for _ in range(5):
            await batcher.embed("alone")
    finally:
        batcher.close()
    assert model.sizes == [1, 1, 1, 1, 1]


async def test_the_loop_stays_responsive_while_the_model_runs():
    batcher = MicroBatcher(SlowEmbedder(seconds=0.2), max_wait_s=0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await batcher.embed("slow")
    finally:
        task.cancel()
        batcher.close()
    assert ticks >= 10


async def test_a_model_failure_reaches_every_caller_and_the_worker_survives():
    model = SlowEmbedder(fail=True)
    batcher = MicroBatcher(model)
    try:
        results = await asyncio.gather(
            *(batcher.embed(str(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        model.fail = False
        assert (await batcher.embed("ok"))[0] == 2.0
    finally:
        batcher.close()


async def test_a_caller_that_gives_up_does_not_break_the_others():
    batcher = MicroBatcher(SlowEmbedder(seconds=0.1), max_wait_s=0.01)
    try:
        impatient = asyncio.create_task(batcher.embed("a"))
        patient = asyncio.create_task(batcher.embed("bb"))
        await asyncio.sleep(0.001)
        impatient.cancel()
        assert (await patient)[0] == 2.0
        with pytest.raises(asyncio.CancelledError):
            await impatient
    finally:
        batcher.close()


async def test_a_collected_batch_runs_in_groups_of_similar_length():
    model = SlowEmbedder(seconds=0.05)
    batcher = MicroBatcher(model, max_batch=32, max_wait_s=0.02, group=4)
    try:
        texts = ["x" * n for n in (9, 1, 7, 3, 5, 2, 8, 4)]
        rows = await asyncio.gather(*(batcher.embed(t) for t in texts))
    finally:
        batcher.close()
    assert [int(r[0]) for r in rows] == [9, 1, 7, 3, 5, 2, 8, 4]  # each caller its own row
    assert model.sizes == [4, 4]
    assert [int(r[1]) for r in rows] == [3, 0, 1, 2, 0, 1, 2, 3]  # position in its sorted group


async def test_by_default_an_idle_worker_runs_at_once_and_what_queues_meanwhile_is_one_round():
    model = SlowEmbedder(seconds=0.05)
    batcher = MicroBatcher(model)  # max_wait_s 0: no wait for company at low load
    try:
        first = asyncio.create_task(batcher.embed("first"))
        await asyncio.sleep(0.01)  # the worker is now running "first" alone
        rest = await asyncio.gather(*(batcher.embed("x" * n) for n in range(1, 9)))
        await first
    finally:
        batcher.close()
    assert model.sizes == [1, 8]  # the eight that queued during the first call share a round
    assert [int(r[0]) for r in rest] == list(range(1, 9))

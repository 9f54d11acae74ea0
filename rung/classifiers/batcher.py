"""Micro-batching for the embedder: concurrent requests share one model call on a worker thread,
so the event loop never blocks and the CPU runs full batches under load."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from rung.classifiers.embedder import Embedder, Matrix


@dataclass
class _Job:
    text: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[np.ndarray]
    enqueued: float


def _resolve(future: asyncio.Future[np.ndarray], value: np.ndarray | BaseException) -> None:
    if future.done():  # the caller gave up (cancelled or timed out)
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class MicroBatcher:
    """`await embed(text)` from any number of coroutines; one worker thread runs the model.

    A batch closes when `max_batch` texts are queued or when the oldest has waited `max_wait_s`
    (time it spent queued while the previous batch ran counts, so a busy worker adds no delay).
    """

    def __init__(
        self, embedder: Embedder, max_batch: int = 32, max_wait_s: float = 0.0, group: int = 8
    ) -> None:
        self.embedder = embedder
        self.group = group
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0
        self.embedded = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.inline = bool(getattr(embedder, "inline", False))
        """A static embedder costs less than a thread hop: it runs on the caller's loop."""
        if not self.inline:
            self._thread = threading.Thread(target=self._run, name="rung-embedder", daemon=True)
            self._thread.start()

    async def embed(self, text: str) -> np.ndarray:
        if self.inline:
            self.batches += 1
            self.embedded += 1
            vector: np.ndarray = self.embedder.embed([text])[0]
            return vector
        loop = asyncio.get_running_loop()
        job = _Job(text, loop, loop.create_future(), time.monotonic())
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch, deadline = [first], first.enqueued + self.max_wait_s
        while len(batch) < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                job = self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            # Padding makes a mixed batch cost its longest text times its size: measured on 2
            # cores, 32 mixed prompts in one call ran at 42/s, one at a time at 103/s, and
            # length-sorted groups of 8 at 100/s. So run similar lengths together, 8 at most.
            batch.sort(key=lambda j: len(j.text))
            for start in range(0, len(batch), self.group):
                self._embed(batch[start : start + self.group])

    def _embed(self, group: list[_Job]) -> None:
        try:
            vectors: Matrix | BaseException = self.embedder.embed([j.text for j in group])
        except Exception as exc:  # hand the failure to every waiting caller
            vectors = exc
        self.batches += 1
        self.embedded += len(group)
        for i, job in enumerate(group):
            value = vectors if isinstance(vectors, BaseException) else vectors[i]
            job.loop.call_soon_threadsafe(_resolve, job.future, value)

"""A tier's replicas: least-outstanding choice, failover between replicas, circuit breakers and a
health probe that brings a replica back after its cooldown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rung.backends import fanout
from rung.backends.breaker import Breaker
from rung.backends.client import Json, OpenAIClient
from rung.backends.litellm_client import LiteLLMClient
from rung.config import BackendConfig, HealthSettings, TierConfig
from rung.errors import BackendError, BackendRejected, NoBackendAvailable

log = logging.getLogger("rung.backends")


def queued(replica: Replica) -> float:
    """Requests ahead at a replica: ours in flight, plus those waiting in a vLLM server's own
    queue (other clients'), as of its last probe."""
    gauges = replica.client.gauges
    return replica.outstanding + (gauges.waiting if gauges is not None else 0.0)


def make_client(backend: BackendConfig, tier: str = "") -> OpenAIClient | LiteLLMClient:
    return LiteLLMClient(backend) if backend.type == "litellm" else OpenAIClient(backend, tier)


@dataclass
class Replica:
    client: OpenAIClient | LiteLLMClient
    breaker: Breaker
    slots: asyncio.Semaphore
    outstanding: int = 0
    reachable: bool = True
    label: str = ""


@dataclass
class OpenStream:
    """A stream that already produced its first chunks, so the replica is committed.

    Iterating it yields batches of chunks (those that arrived together), first batch included.
    """

    replica: Replica
    first: list[Json]
    _rest: AsyncIterator[list[Json]]
    _done: Callable[[BaseException | None], None]
    _closed: bool = field(default=False)

    async def __aiter__(self) -> AsyncIterator[list[Json]]:
        error: BaseException | None = None
        try:
            yield self.first
            async for batch in self._rest:
                yield batch
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self.aclose(error)

    async def aclose(self, error: BaseException | None = None) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._rest.aclose()  # type: ignore[attr-defined]
            self._done(error)


class TierPool:
    def __init__(
        self,
        tier: TierConfig,
        health: HealthSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tier = tier
        self.health = health
        self.clock = clock
        self._turn = 0
        self.replicas = [
            Replica(
                client=make_client(backend, tier.name),
                breaker=Breaker(health.failure_threshold, health.cooldown_s),
                slots=asyncio.Semaphore(backend.max_concurrency),
                label=f"{tier.name}[{i}]",
            )
            for i, backend in enumerate(tier.backends)
        ]

    async def start(self) -> None:
        for replica in self.replicas:
            await replica.client.start()

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.client.aclose()

    def available(self) -> bool:
        now = self.clock()
        return any(r.breaker.allows(now) for r in self.replicas)

    def load(self) -> float:
        """Share of the capacity in rotation that is in use (1.0: none left, or none in
        rotation): this gateway's requests in flight, or what vLLM servers report of their own
        load (other clients' requests included), whichever is higher."""
        now = self.clock()
        live = [r for r in self.replicas if r.breaker.allows(now)]
        capacity = sum(r.client.config.max_concurrency for r in live)
        if not capacity:
            return 1.0
        own = min(1.0, sum(r.outstanding for r in live) / capacity)
        reported = [g.pressure for r in live if (g := r.client.gauges) is not None]
        return max(own, sum(reported) / len(live)) if reported else own

    def ready(self) -> bool:
        now = self.clock()
        return any(r.reachable and r.breaker.allows(now) for r in self.replicas)

    def candidates(self) -> list[Replica]:
        """Replicas in rotation, least outstanding first; ties rotate so load spreads evenly."""
        now = self.clock()
        if len(self.replicas) == 1:  # the common case, without the sort's per-request lists
            only = self.replicas[0]
            return [only] if only.breaker.allows(now) else []
        live = [r for r in self.replicas if r.breaker.allows(now)]
        self._turn = (self._turn + 1) % max(len(self.replicas), 1)
        n = len(live)
        rotated = [live[(i + self._turn) % n] for i in range(n)] if n else []
        return sorted(rotated, key=queued)

    def _record(self, replica: Replica, error: BaseException | None) -> None:
        if error is None or isinstance(error, BackendRejected):
            replica.breaker.record_success()
            replica.reachable = True
        elif isinstance(error, BackendError):
            was_open = replica.breaker.is_open
            replica.breaker.record_failure(self.clock())
            if replica.breaker.is_open and not was_open:
                log.warning(
                    "replica %s out of rotation for %.0fs: %s",
                    replica.label,
                    self.health.cooldown_s,
                    error.message,
                )

    def _fans_out(self, payload: Json) -> int:
        """How many single-choice calls a request takes here (0: one call does it)."""
        n = fanout.wanted(payload)
        return n if n > 1 and self.tier.choices == "fan_out" else 0

    async def complete(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> tuple[Json, Replica]:
        """Answer from the first replica that can; raise the last error if none could. `n`
        choices from a `fan_out` tier are `n` calls at once, joined."""
        n = self._fans_out(payload)
        if not n:
            return await self._complete(path, payload, headers)
        calls = [
            asyncio.ensure_future(self._complete(path, fanout.one_choice(payload, i), headers))
            for i in range(n)
        ]
        try:
            answers = await asyncio.gather(*calls)
        except BaseException:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            raise
        return fanout.join([body for body, _ in answers]), answers[0][1]

    async def _complete(
        self, path: str, payload: Json, headers: Mapping[str, str] | None
    ) -> tuple[Json, Replica]:
        last: BackendError | None = None
        for replica in self.candidates():
            replica.outstanding += 1
            try:
                async with replica.slots:
                    body = await replica.client.complete(path, payload, headers)
            except BackendError as exc:
                self._record(replica, exc)
                last = exc
                continue
            except BackendRejected as exc:
                self._record(replica, exc)
                raise
            finally:
                replica.outstanding -= 1
            self._record(replica, None)
            return body, replica
        raise last or NoBackendAvailable(f"tier {self.tier.name}: no replica in rotation")

    async def open_stream(
        self, path: str, payload: Json, headers: Mapping[str, str] | None = None
    ) -> OpenStream:
        """Start a stream on the first replica that yields a chunk; later replicas on failure.
        `n` choices from a `fan_out` tier are `n` streams, one after the other."""
        n = self._fans_out(payload)
        if not n:
            return await self._open_stream(path, payload, headers)
        first = await self._open_stream(path, fanout.one_choice(payload, 0), headers)
        chained = self._chain(first, path, payload, headers, n)
        return OpenStream(first.replica, [], chained, lambda error: None)

    async def _chain(
        self,
        first: OpenStream,
        path: str,
        payload: Json,
        headers: Mapping[str, str] | None,
        n: int,
    ) -> AsyncIterator[list[Json]]:
        """The choices' streams in turn, renumbered, their usage summed into one last chunk."""
        usage = fanout.UsageSum()
        last: Json | None = None
        stream = first
        for i in range(n):
            if i:
                stream = await self._open_stream(path, fanout.one_choice(payload, i), headers)
            found = None
            try:
                async for batch in stream:
                    chunks, seen = fanout.renumber(batch, i)
                    found = seen if seen is not None else found
                    if chunks:
                        last = chunks[-1]
                        yield chunks
            finally:
                await stream.aclose()
            usage.add(found)
        if usage.total is not None and last is not None:
            yield [fanout.usage_chunk(last, usage.total)]

    async def _open_stream(
        self, path: str, payload: Json, headers: Mapping[str, str] | None
    ) -> OpenStream:
        last: BackendError | None = None
        for replica in self.candidates():
            replica.outstanding += 1
            try:
                await replica.slots.acquire()
            except BaseException:
                replica.outstanding -= 1
                raise
            chunks = replica.client.stream(path, payload, headers)
            try:
                first = await anext(aiter(chunks))
            except BaseException as exc:
                await chunks.aclose()  # type: ignore[attr-defined]
                replica.slots.release()
                replica.outstanding -= 1
                self._record(replica, exc)
                if isinstance(exc, BackendError):
                    last = exc
                    continue
                raise
            return OpenStream(replica, first, chunks, self._stream_done(replica))
        raise last or NoBackendAvailable(f"tier {self.tier.name}: no replica in rotation")

    def _stream_done(self, replica: Replica) -> Callable[[BaseException | None], None]:
        def done(error: BaseException | None) -> None:
            replica.slots.release()
            replica.outstanding -= 1
            # A client that went away says nothing about the replica's health.
            if not isinstance(error, asyncio.CancelledError | GeneratorExit):
                self._record(replica, error)

        return done

    async def probe(self) -> None:
        """Probe every idle replica; a reachable one returns once its cooldown is over.

        A replica with calls in flight is not probed: those calls say whether it is up, and a
        probe may disturb them (llama-cpp-python's server ends a running stream when any other
        request arrives)."""
        idle = [r for r in self.replicas if r.outstanding == 0]
        results = await asyncio.gather(*(r.client.probe(self.health.probe_timeout_s) for r in idle))
        now = self.clock()
        for replica, ok in zip(idle, results, strict=True):
            if not ok and replica.outstanding > 0:
                # A single-slot server (llama.cpp) may not answer a probe while it generates
                # for us; the calls in flight will tell whether it is really down.
                continue
            was_reachable, replica.reachable = replica.reachable, ok
            if not ok:
                if was_reachable:
                    log.warning("replica %s failed its health probe", replica.label)
                replica.breaker.trip(now)
            elif replica.breaker.is_open and (not was_reachable or replica.breaker.allows(now)):
                # Out only because a probe failed (e.g. not started yet): back at once. Out
                # because calls failed: back once the cooldown is over.
                log.info("replica %s back in rotation", replica.label)
                replica.breaker.record_success()


async def probe_forever(pools: list[TierPool], interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.gather(*(pool.probe() for pool in pools))
        except Exception:  # a bug in one round must not end health checking for good
            log.exception("health probe round failed")


def _reported(replica: Replica) -> dict[str, float]:
    gauges = replica.client.gauges
    if gauges is None:
        return {}
    return {"server_waiting": gauges.waiting, "server_kv_cache": round(gauges.kv_cache, 4)}


def describe(pools: list[TierPool]) -> list[dict[str, Any]]:
    """Replica states for /readyz and operators (no secrets)."""
    return [
        {
            "tier": pool.tier.name,
            "replicas": [
                {
                    "replica": r.label,
                    "reachable": r.reachable,
                    "in_rotation": r.breaker.allows(pool.clock()),
                    "outstanding": r.outstanding,
                    **_reported(r),
                }
                for r in pool.replicas
            ],
        }
        for pool in pools
    ]

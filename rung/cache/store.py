"""Where cache entries live: the `CacheStore` protocol and the in-memory store.

A store keeps entries by (tenant, exact key). It does not search: every gateway replica keeps its
own vector index (rung.cache.index) and asks the store for the entries the index points at.
Stores that several replicas share (Redis) also report entries that others add or purge, so
each replica's index follows them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rung.cache.entry import Entry


class StoreError(Exception):
    """The store cannot be reached or answered garbage: the cache is bypassed, not the request."""


@dataclass(frozen=True)
class Announced:
    """What a replica's index needs of a new entry, sent with its announcement: with it, the
    other replicas index the entry without reading it (N-1 reads per stored answer saved)."""

    scope: str
    text: str
    tier: str
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Change:
    """Another replica added (`key` set) or purged (`key` None) entries of a tenant."""

    tenant: str
    key: str | None
    announced: Announced | None = None
    """The new entry's index data, when the announcement carried it (else: read the entry)."""


class CacheStore(Protocol):
    """Every call returns or fails (StoreError, TimeoutError) within the store's own deadline."""

    async def start(self) -> None: ...

    async def get(self, tenant: str, key: str) -> Entry | None:
        """The live entry, or None (absent, expired, or unreadable: then also deleted)."""

    async def put(self, entry: Entry) -> list[str]:
        """Store (or replace) an entry; returns the keys of this tenant's entries it evicted."""

    async def delete(self, tenant: str, key: str) -> None: ...

    async def purge(self, tenant: str) -> int:
        """Delete all of a tenant's entries; returns how many there were."""

    def entries(self) -> AsyncIterator[Entry]:
        """Every live entry, for rebuilding the vector index at startup."""

    async def usage(self, tenant: str) -> tuple[int, int]:
        """(entries, bytes) of a tenant."""

    async def watch(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        """Call `on_change` for other replicas' changes until cancelled (returns at once when
        nothing is shared); `on_subscribed` once the subscription is in place, before any
        change it delivers."""

    async def aclose(self) -> None: ...


class _Tenant:
    def __init__(self) -> None:
        self.entries: OrderedDict[str, Entry] = OrderedDict()  # least recently used first
        self.bytes = 0


class MemoryStore:
    """Per-tenant LRU bounded by entries and bytes, with a TTL checked on every read."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._tenants: dict[str, _Tenant] = {}

    async def start(self) -> None:
        return None

    def _expired(self, entry: Entry) -> bool:
        return self.clock() - entry.created > self.ttl_s

    async def get(self, tenant: str, key: str) -> Entry | None:
        space = self._tenants.get(tenant)
        entry = space.entries.get(key) if space else None
        if entry is None or space is None:
            return None
        if self._expired(entry):
            await self.delete(tenant, key)
            return None
        space.entries.move_to_end(key)
        return entry

    async def put(self, entry: Entry) -> list[str]:
        space = self._tenants.setdefault(entry.tenant, _Tenant())
        old = space.entries.pop(entry.key, None)
        if old is not None:
            space.bytes -= old.size
        space.entries[entry.key] = entry
        space.bytes += entry.size
        evicted = []
        while len(space.entries) > 1 and (
            len(space.entries) > self.max_entries or space.bytes > self.max_bytes
        ):
            key, gone = space.entries.popitem(last=False)
            space.bytes -= gone.size
            evicted.append(key)
        if entry.size > self.max_bytes:  # one entry larger than the whole budget: not kept
            space.entries.pop(entry.key)
            space.bytes -= entry.size
            evicted.append(entry.key)
        return evicted

    async def delete(self, tenant: str, key: str) -> None:
        space = self._tenants.get(tenant)
        if space is not None and (gone := space.entries.pop(key, None)) is not None:
            space.bytes -= gone.size

    async def purge(self, tenant: str) -> int:
        space = self._tenants.pop(tenant, None)
        return len(space.entries) if space else 0

    async def entries(self) -> AsyncIterator[Entry]:
        for space in list(self._tenants.values()):
            for entry in list(space.entries.values()):
                if not self._expired(entry):
                    yield entry

    async def usage(self, tenant: str) -> tuple[int, int]:
        space = self._tenants.get(tenant)
        return (len(space.entries), space.bytes) if space else (0, 0)

    async def watch(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        return None

    async def aclose(self) -> None:
        self._tenants.clear()

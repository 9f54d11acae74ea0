"""The semantic cache as the pipeline sees it: look up, store, purge, stats.

Lookup order for one request: the exact key first (no embedding needed when the entry was made
under the same routing setup); then the request's embedding and routing decision (computed
lazily, once, by the caller's `decide`), the stale-tier rule, and the semantic search inside the
request's scope, each candidate above the similarity threshold checked by the near-miss guard
(exact rules: numbers, quotes, code, negation, names, options) and then by the learned hit
verifier at the threshold the error budget set (`cache.max_wrong_hit_rate`). Candidates are
judged on what this process keeps beside each vector (`Known`: scope, question, tier); only the
one served is read from the store.

Faults: every store call has a deadline; a call past it is that request's `bypass`. Three
failures in a row turn the cache off (retried after 1 s, then 2, 4, ... up to 30 s); the outage
and the recovery are logged once each, never per request. The vector index follows other
replicas through the store's change subscription; only when that subscription broke (changes
may have been missed) is the index re-read, in the background, and swapped in whole, not after
every outage: a store marked down because this process was too busy to read its replies in
time missed nothing, and re-reading every entry then only adds load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, TypeVar

from rung.cache.entry import Entry, Vector
from rung.cache.guard import Salient, disagreement, salient
from rung.cache.index import ScopeIndex
from rung.cache.keys import CacheKey
from rung.cache.store import CacheStore, Change, StoreError
from rung.config import CacheConfig

log = logging.getLogger("rung.cache")
T = TypeVar("T")
Status = Literal["hit-exact", "hit-semantic", "miss", "bypass"]
Decide = Callable[[], Awaitable[tuple[Vector | None, str]]]
"""Embeds the request and decides its tier (memoised by the caller): (vector, tier name)."""
Verify = Callable[[str, str, float], bool]
"""(new question, cached question, cosine) -> may the cached answer be served (the learned hit
verifier at the threshold the error budget set; rung.cache.verifier)."""

RETRY_S = 1.0
MAX_RETRY_S = 30.0
STRIKES = 3
"""Consecutive failed store calls before the store counts as down: one slow reply under load
is that request's bypass, not an outage (and not a rebuild of the index)."""
CANDIDATES = 4


class Known(NamedTuple):
    """What this process keeps of an indexed entry beside its vector: enough to judge a
    candidate (guard, verifier, stale tier) without reading it from the store; only the one
    served is read (with Redis, one round trip per lookup instead of one per candidate)."""

    scope: str
    text: str
    tier: str


@dataclass(frozen=True)
class Lookup:
    status: Status
    entry: Entry | None = None
    similarity: float | None = None
    rejected: str | None = None
    """Why a match was not served: `near-miss:<part>`, `stale-tier`, `unavailable`."""


@dataclass
class Stats:
    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypassed: int = 0
    near_miss_rejections: int = 0
    verifier_rejections: int = 0
    stale_tier_rejections: int = 0
    stored: int = 0
    not_stored: int = 0


@dataclass
class _Health:
    down_since: float | None = None
    retry_at: float = 0.0
    errors: int = 0
    strikes: int = 0
    """Consecutive failures (reset by any success)."""
    backoff_s: float = RETRY_S
    resync: bool = False
    """The change subscription broke: changes may have been missed, so the index is re-read
    once the subscription is back (a store marked down while it held, e.g. a loop too busy to
    read replies in time, missed nothing)."""
    subscribed: bool = False


SALIENT_MEMO = 10_000
"""Stored questions whose salient parts are kept (a few hundred bytes each)."""
CHANGE_READS = 3
"""Tries to read an entry another replica announced."""


class SemanticCache:
    def __init__(
        self,
        store: CacheStore,
        config: CacheConfig,
        tier_names: list[str],
        clock: Callable[[], float] = time.monotonic,
        groups: Mapping[str, str] | None = None,
        verify: Verify | None = None,
    ) -> None:
        self.store = store
        self.verify = verify
        """None: candidates above the similarity threshold that pass the guard are served."""
        self.config = config
        self.rank = {name: i for i, name in enumerate(tier_names)}
        self.clock = clock
        self._groups = dict(groups or {})
        """Tenant -> its sharing group (tenants' `cache_group`)."""
        self._indexes: dict[tuple[str, str], ScopeIndex] = {}
        self._known: dict[tuple[str, str], Known] = {}  # (group, key) -> its scope, text, tier
        self._salient: OrderedDict[str, Salient] = OrderedDict()
        """Stored questions' salient parts, least recently judged first (bounded)."""
        self._stats: dict[str, Stats] = {}
        self._health = _Health()
        self._watcher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def set_groups(self, groups: Mapping[str, str]) -> None:
        """New sharing groups after a config reload (entries stay where they are)."""
        self._groups = dict(groups)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.start()
            await self._rebuild()
        except Exception as exc:  # any store failure: serve without the cache
            self._failed(exc)
        self._watcher = asyncio.create_task(self._watch())

    async def aclose(self) -> None:
        for task in [self._watcher, *self._background]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.store.aclose()

    async def _watch(self) -> None:
        while True:
            try:
                await self.store.watch(self._on_change, self._subscribed)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the subscription broke: retry, then re-read the index
                self._health.subscribed = False
                self._health.resync = True
                self._failed(exc)
                await asyncio.sleep(RETRY_S)

    def _subscribed(self) -> None:
        self._health.subscribed = True
        if self._health.resync:
            self._resync()

    def _resync(self) -> None:
        """Re-read the index in the background (changes may have been missed meanwhile)."""
        self._health.resync = False
        log.warning(
            "rebuilding the vector index (the change subscription broke: changes may be missed)"
        )
        task = asyncio.create_task(self._rebuild_or_fail())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _on_change(self, change: Change) -> None:
        if change.key is None:
            self._drop_group(change.tenant)
            return
        announced = change.announced
        if announced is not None:  # the announcement carried what the index needs
            known = Known(announced.scope, announced.text, announced.tier)
            self._add(change.tenant, change.key, known, announced.vector)
            return
        for attempt in range(CHANGE_READS):
            try:
                entry = await self.store.get(change.tenant, change.key)
                break
            except (StoreError, TimeoutError):
                # Read within the request path's tight deadline: a busy moment is waited out;
                # only a store that keeps failing breaks the subscription (then: a re-read).
                if attempt == CHANGE_READS - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        if entry is not None:
            self._index(entry)

    async def _rebuild_or_fail(self) -> None:
        """A rebuild in the background: a store that fails again marks the cache down and
        the index for another re-read, never an unretrieved task exception."""
        try:
            await self._rebuild()
        except Exception as exc:
            self._health.resync = True
            self._failed(exc)

    async def _rebuild(self) -> None:
        """Re-read every entry into fresh indexes, then swap them in: lookups keep the old
        index meanwhile instead of missing everything."""
        indexes: dict[tuple[str, str], ScopeIndex] = {}
        known: dict[tuple[str, str], Known] = {}
        async for entry in self.store.entries():
            self._index(entry, indexes, known)
        self._indexes, self._known = indexes, known

    # -- index bookkeeping -------------------------------------------------------------------

    def group(self, tenant: str) -> str:
        """The namespace a tenant's entries live in: its sharing group, else itself."""
        group = self._groups.get(tenant)
        return f"group:{group}" if group else f"tenant:{tenant}"

    def _index(
        self,
        entry: Entry,
        indexes: dict[tuple[str, str], ScopeIndex] | None = None,
        known: dict[tuple[str, str], Known] | None = None,
    ) -> None:
        if entry.vector is None:
            return
        parts = Known(entry.scope, entry.text, entry.tier)
        self._add(entry.tenant, entry.key, parts, entry.vector, indexes, known)

    def _add(
        self,
        group: str,
        key: str,
        parts: Known,
        vector: Vector,
        indexes: dict[tuple[str, str], ScopeIndex] | None = None,
        known: dict[tuple[str, str], Known] | None = None,
    ) -> None:
        if not self.config.semantic:
            return
        indexes = self._indexes if indexes is None else indexes
        known = self._known if known is None else known
        where = (group, parts.scope)
        index = indexes.get(where)
        if index is None:
            index = indexes[where] = ScopeIndex(len(vector), self.config.ann_min)
        index.add(key, vector)
        known[(group, key)] = parts

    def _unindex(self, group: str, key: str) -> None:
        known = self._known.pop((group, key), None)
        if known is None:
            return
        index = self._indexes.get((group, known.scope))
        if index is not None:
            index.remove(key)
            if not len(index):
                del self._indexes[(group, known.scope)]

    def _drop_group(self, group: str) -> None:
        for where in [w for w in self._indexes if w[0] == group]:
            del self._indexes[where]
        for where in [w for w in self._known if w[0] == group]:
            del self._known[where]

    # -- faults ------------------------------------------------------------------------------

    def _available(self) -> bool:
        return self._health.down_since is None or self.clock() >= self._health.retry_at

    def _failed(self, exc: BaseException) -> None:
        health = self._health
        health.errors += 1
        health.strikes += 1
        if health.down_since is not None:  # a retry failed: wait longer next time
            health.backoff_s = min(MAX_RETRY_S, health.backoff_s * 2)
            health.retry_at = self.clock() + health.backoff_s
            return
        if health.strikes >= STRIKES:
            health.down_since = self.clock()
            health.backoff_s = RETRY_S
            health.retry_at = self.clock() + RETRY_S
            log.warning(
                "cache store unavailable (%s: %s); serving without the cache until it is back",
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        health = self._health
        health.strikes = 0
        if health.down_since is not None:
            log.warning("cache store is back after %.1fs", self.clock() - health.down_since)
            health.down_since = None
        if health.resync and health.subscribed:  # a re-read that failed: again
            self._resync()

    async def _call(self, call: Awaitable[T]) -> T:
        # The store bounds its own calls (Redis: `redis_timeout_ms` on each reply, judged
        # against the reply so that a late loop does not fail one that came in time).
        result = await call
        self._recovered()
        return result

    # -- the request path --------------------------------------------------------------------

    def stats_of(self, tenant: str) -> Stats:
        return self._stats.setdefault(self.group(tenant), Stats())

    async def lookup(self, tenant: str, key: CacheKey, route_key: str, decide: Decide) -> Lookup:
        stats = self.stats_of(tenant)
        if not self._available():
            stats.bypassed += 1
            return Lookup("bypass", rejected="unavailable")
        group = self.group(tenant)
        try:
            return await self._lookup(group, key, route_key, decide, stats)
        except (TimeoutError, StoreError) as exc:  # a store fault is never the client's problem
            self._failed(exc)
        stats.bypassed += 1
        return Lookup("bypass", rejected="unavailable")

    async def _lookup(
        self, group: str, key: CacheKey, route_key: str, decide: Decide, stats: Stats
    ) -> Lookup:
        entry = await self._call(self.store.get(group, key.exact))
        if entry is not None and entry.scope == key.scope and entry.text == key.text:
            # Same text, same routing setup: the decision it was made under is today's too.
            if entry.route_key == route_key:
                stats.hits_exact += 1
                return Lookup("hit-exact", entry, 1.0)
            _, decided = await decide()
            if self._stale(entry.tier, decided):
                stats.stale_tier_rejections += 1
                stats.misses += 1
                return Lookup("miss", rejected="stale-tier")
            stats.hits_exact += 1
            return Lookup("hit-exact", entry, 1.0)
        index = self._indexes.get((group, key.scope)) if self.config.semantic else None
        if index is None or not len(index):
            stats.misses += 1
            return Lookup("miss")
        vector, decided = await decide()
        if vector is None:
            stats.misses += 1
            return Lookup("miss")
        rejected: str | None = None
        asked: Salient | None = None  # the question's salient parts, once per lookup
        for candidate, similarity in index.search(vector, CANDIDATES):
            if similarity < self.config.similarity_threshold:
                break
            known = self._known.get((group, candidate))
            if known is None:
                continue
            asked = asked or salient(key.text)
            why = disagreement(asked, self._salient_of(known.text))
            if why is not None:
                rejected = rejected or f"near-miss:{why}"
                continue
            if self.verify is not None and not self.verify(key.text, known.text, similarity):
                rejected = rejected or "verifier"
                continue
            if self._stale(known.tier, decided):
                rejected = rejected or "stale-tier"
                continue
            found = await self._call(self.store.get(group, candidate))
            if found is None or found.text != known.text:
                self._unindex(group, candidate)  # expired or evicted elsewhere
                continue
            stats.hits_semantic += 1
            return Lookup("hit-semantic", found, round(similarity, 4))
        if rejected is not None and rejected.startswith("near-miss"):
            stats.near_miss_rejections += 1
        elif rejected == "verifier":
            stats.verifier_rejections += 1
        elif rejected == "stale-tier":
            stats.stale_tier_rejections += 1
        stats.misses += 1
        return Lookup("miss", rejected=rejected)

    def _salient_of(self, text: str) -> Salient:
        """A stored question's salient parts, kept for the most recent SALIENT_MEMO questions
        judged: the same entries come up as candidates again and again, and reading a question
        costs 25-95 us (up to CANDIDATES per lookup)."""
        memo = self._salient
        parts = memo.get(text)
        if parts is None:
            parts = memo[text] = salient(text)
            if len(memo) > SALIENT_MEMO:
                memo.popitem(last=False)
        else:
            memo.move_to_end(text)
        return parts

    def _stale(self, tier: str, decided: str) -> bool:
        """A cheap answer (made by `tier`) is not served to a query now judged to need a
        bigger tier."""
        return self.rank.get(tier, -1) < self.rank.get(decided, 0)

    async def put(
        self,
        tenant: str,
        key: CacheKey,
        vector: Vector | None,
        body: bytes,
        *,
        tier: str,
        model: str,
        decided: str,
        route_key: str,
        confidence: float | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store an answer (the caller has checked it may be stored); False when it was not."""
        stats = self.stats_of(tenant)
        if not self._available():
            stats.not_stored += 1
            return False
        group = self.group(tenant)
        entry = Entry(
            key=key.exact,
            tenant=group,
            scope=key.scope,
            text=key.text,
            body=body,
            tier=tier,
            model=model,
            decided=decided,
            route_key=route_key,
            vector=vector if self.config.semantic else None,
            confidence=confidence,
            usage=dict(usage or {}),
        )
        try:
            evicted = await self._call(self.store.put(entry))
        except (TimeoutError, StoreError) as exc:  # never fail a served request over the cache
            self._failed(exc)
            stats.not_stored += 1
            return False
        for gone in evicted:
            self._unindex(group, gone)
        if entry.key not in evicted:
            self._index(entry)
        stats.stored += 1
        return True

    async def purge(self, tenant: str) -> int:
        group = self.group(tenant)
        removed = await self._call(self.store.purge(group))
        self._drop_group(group)
        return removed

    async def stats(self, tenant: str) -> dict[str, Any]:
        entries, size = await self._call(self.store.usage(self.group(tenant)))
        return {
            "group": self.group(tenant),
            "entries": entries,
            "bytes": size,
            **asdict(self.stats_of(tenant)),
            "store": self.config.store,
            "store_available": self._health.down_since is None,
            "store_errors": self._health.errors,
        }

    def health(self) -> dict[str, Any]:
        return {
            "store": self.config.store,
            "available": self._health.down_since is None,
            "errors": self._health.errors,
            "indexed": sum(len(i) for i in self._indexes.values()),
        }

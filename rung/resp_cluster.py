"""The request path's Redis client on a Redis Cluster (`redis+cluster://host:port[,host:port]`):
one pipelined connection per primary (rung.resp.Client), each command sent to the primary that
owns its key's slot.

The slot map comes from `CLUSTER SLOTS` on any node that answers (the URL's seeds first time,
the known nodes after). Redirections are followed: `MOVED` updates the map (and re-reads it
whole, once, in the background), `ASK` sends `ASKING` and the command together on the target's
connection (then `WAIT`, as everywhere, when the write must reach replicas). A command is sent
again only when it surely did not run: a redirection, a `TRYAGAIN` or `CLUSTERDOWN` reply, or a
connection that could not be opened. A connection lost
with a command in flight raises (the command may have run: the caller's failure mode decides,
as on one Redis), and the next call re-reads the map, so after a failover it goes to the
promoted replica.

Every multi-key script's keys share a hash tag (rung.redisconn.tagger), so one slot holds them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from rung.resp import Address, Arg, Client, NotConnected, ReplyError, Script

SLOTS = 16384
REDIRECTS = 5
"""At most this many redirections or retries for one command (a resharding moves a slot once)."""
SETTLE_S = 0.05
"""Pause before retrying a command the cluster refused while it reconfigures."""
Node = tuple[str, int]


SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster(url: str) -> bool:
    """A Redis Cluster URL (`redis+cluster://`, `rediss+cluster://`)?"""
    return url.startswith(tuple(f"{scheme}://" for scheme in SCHEMES))


def parse_cluster_url(url: str) -> list[Address]:
    """`redis+cluster://[[user]:password@]host:port[,host:port...]` or `rediss+cluster://`:
    the seed nodes, each with the URL's credentials (a cluster has only database 0)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Redis Cluster URL (redis+cluster://): {scheme}://")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    credentials, at, hosts = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a Redis Cluster URL lists host:port pairs, not {part!r}")
        tls = scheme == "rediss+cluster"
        seeds.append(Address(host.strip("[]"), int(port), None, tls, username, password, 0))
    return seeds


def key_of(args: Sequence[Arg]) -> bytes:
    """The key a one-key command acts on (rung sends only those: GET, HGETALL, HINCRBY...)."""
    key = args[1]
    return key if isinstance(key, bytes) else str(key).encode()


class ClusterClient:
    """rung.resp.Client's interface (`call`, `run`, `aclose`) over a Redis Cluster."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        stale_s: float | None = None,
    ) -> None:
        self.seeds = parse_cluster_url(url)
        self._options = (timeout_s, connect_timeout_s, stale_s)
        self._nodes: dict[Node, Client] = {}
        self._slots: list[Node | None] = [None] * SLOTS
        self._mapped = False
        self._refreshing: asyncio.Lock | None = None
        self._refreshed_at = 0.0
        self._background: set[asyncio.Task[None]] = set()

    async def call(self, *args: Arg) -> Any:
        return await self._send(key_slot(key_of(args)), args)

    async def run(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], replicas: int = 0
    ) -> Any:
        slot = key_slot(keys[0].encode())

        async def send(*command: Arg) -> Any:
            return await self._send(slot, command, replicas)

        return await script.run(send, keys, args)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        nodes, self._nodes = self._nodes, {}
        await asyncio.gather(*(c.aclose() for c in nodes.values()), return_exceptions=True)

    def node_of(self, slot: int) -> Node | None:
        """The primary the map says owns `slot` (None before the map is read)."""
        return self._slots[slot]

    async def _send(self, slot: int, args: tuple[Arg, ...], replicas: int = 0) -> Any:
        asking: Node | None = None
        for attempt in range(REDIRECTS + 1):
            if not self._mapped:
                await self._refresh()
            node = asking or self._slots[slot]
            if node is None:
                await self._refresh(force=True)
                node = self._slots[slot]
                if node is None:
                    raise RedisConnectionError(f"redis cluster: no node serves slot {slot}")
            client = self._client(node)
            try:
                if asking is not None:
                    return await client.call_asking(*args, replicas=replicas)
                if replicas:
                    return await client.call_replicated(args, replicas)
                return await client.call(*args)
            except ReplyError as exc:
                kind, *rest = str(exc).split()
                if attempt == REDIRECTS:
                    raise
                if kind == "MOVED" and len(rest) == 2:
                    self._slots[int(rest[0])] = _node(rest[1], node)
                    self._refresh_later()
                    asking = None
                elif kind == "ASK" and len(rest) == 2:
                    asking = _node(rest[1], node)
                elif kind in ("TRYAGAIN", "CLUSTERDOWN"):
                    asking = None
                    await asyncio.sleep(SETTLE_S)
                    await self._refresh(force=True)
                else:
                    raise
            except NotConnected:
                # Never sent: the node is down. Read the map again (after a failover it names
                # the promoted replica) and send it there.
                if attempt == REDIRECTS:
                    raise
                asking = None
                await asyncio.sleep(SETTLE_S)
                await self._refresh(force=True)
            except RedisConnectionError:
                self._refresh_later()  # sent, fate unknown: the caller decides; next call re-maps
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _client(self, node: Node) -> Client:
        client = self._nodes.get(node)
        if client is None:
            seed = self.seeds[0]
            address = replace(seed, host=node[0], port=node[1])
            client = self._nodes[node] = Client(address, *self._options)
        return client

    def _refresh_later(self) -> None:
        self._in_background(self._refresh(force=True, quiet=True))

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` without awaiting it (cancelled by `aclose`)."""
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, force: bool = False, quiet: bool = False) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        asked_at = time.monotonic()
        async with self._refreshing:
            if self._mapped and (not force or self._refreshed_at >= asked_at):
                return  # another caller read it meanwhile
            known = list(self._nodes) + [(s.host, s.port) for s in self.seeds]
            failures = []
            for node in dict.fromkeys(known):
                try:
                    reply = await self._client(node).call("CLUSTER", "SLOTS")
                except (RedisConnectionError, ReplyError, TimeoutError) as exc:
                    failures.append(f"{node[0]}:{node[1]}: {exc}")
                    continue
                self._apply(reply, node)
                return
            if not quiet:
                raise NotConnected("redis cluster: no node answered CLUSTER SLOTS (" +
                                   "; ".join(failures) + ")")  # fmt: skip

    def _apply(self, reply: list[Any], asked: Node) -> None:
        slots: list[Node | None] = [None] * SLOTS
        for row in reply:
            start, end, primary = int(row[0]), int(row[1]), row[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            owner = (host or asked[0], int(primary[1]))
            slots[start : end + 1] = [owner] * (end + 1 - start)
        self._slots, self._mapped = slots, True
        self._refreshed_at = time.monotonic()
        owners = {n for n in slots if n is not None}
        for node in [n for n in self._nodes if n not in owners]:
            stale = self._nodes.pop(node)  # a node that no longer owns slots (dead or demoted)
            self._in_background(stale.aclose())


def _node(text: str, asked: Node) -> Node:
    host, _, port = text.rpartition(":")
    return (host or asked[0], int(port))

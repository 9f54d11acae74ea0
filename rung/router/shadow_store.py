"""Shadow evidence shared by every worker and replica (`limits.store: redis`): the checks'
tallies and the guard's holds, in one Redis hash per tenant.

Each worker counts in memory as before and, after each check it completes (a share of routed
answers, off the client's path), sends what it counted since its last turn and reads back the
sums of every worker: one script call. So the estimate and the guard see every worker's checks
(`guard_min_checks` counts the fleet's checks, not each worker's), and a hold one worker starts
reaches the others at their next check. A hold that ends clears its tier's sums, once, for
everyone: the tier is judged afresh. Holds are stored as wall-clock ends (workers' monotonic
clocks differ). A Redis failure loses nothing: the counts wait for the next turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rung.redisconn import fast_client
from rung.resp import Script

PREFIX = "rung:shadow:"
TIMEOUT_S = 0.2
TTL_S = 7 * 86_400
"""A tenant's evidence is forgotten a week after its last check."""
FIELDS = ("served", "sampled", "agreed")
"""A tenant's hash: `{tier}:{field}` -> count, `{tier}:hold` -> the wall-clock end of its hold."""

# ARGV: e, then e (tier, end) holds that ended: each cleared with its tier's sums unless a
# later hold replaced it (one second of slack for the workers' clock conversions), before
# anything counted since is added; h, then h (tier, end) holds to start (kept if a later one is
# there); n, then n (field, increment) pairs; the key's time to live. Returns the hash.
SYNC = """
local key, i = KEYS[1], 2
for _ = 1, tonumber(ARGV[1]) do
  local tier = ARGV[i]
  local now = redis.call('HGET', key, tier .. ':hold')
  if now and tonumber(now) <= tonumber(ARGV[i + 1]) + 1 then
    redis.call('HDEL', key, tier .. ':hold', tier .. ':served', tier .. ':sampled',
               tier .. ':agreed')
  end
  i = i + 2
end
local h = tonumber(ARGV[i]); i = i + 1
for _ = 1, h do
  local f = ARGV[i] .. ':hold'
  local now = tonumber(redis.call('HGET', key, f) or '0')
  if tonumber(ARGV[i + 1]) > now then redis.call('HSET', key, f, ARGV[i + 1]) end
  i = i + 2
end
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1]); i = i + 2
end
redis.call('EXPIRE', key, ARGV[i])
return redis.call('HGETALL', key)
"""


@dataclass
class Turn:
    """What one worker sends for one tenant: counts since its last turn, and hold changes."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(tier, one of FIELDS) -> increment."""
    started: dict[str, float] = field(default_factory=dict)
    """Tier -> wall-clock end of a hold this worker started."""
    ended: dict[str, float] = field(default_factory=dict)
    """Tier -> wall-clock end of a hold this worker saw end."""

    def add(self, tier: str, name: str, amount: int = 1) -> None:
        key = (tier, name)
        self.counts[key] = self.counts.get(key, 0) + amount

    def merge(self, other: Turn) -> None:
        """Put back a turn that did not reach Redis."""
        for (tier, name), amount in other.counts.items():
            self.add(tier, name, amount)
        for tier, end in other.started.items():
            self.started[tier] = max(end, self.started.get(tier, end))
        for tier, end in other.ended.items():
            self.ended[tier] = max(end, self.ended.get(tier, end))


@dataclass(frozen=True)
class Pooled:
    """Every worker's evidence for one tenant."""

    counts: Mapping[str, Mapping[str, int]]
    """Tier -> {served, sampled, agreed}."""
    holds: Mapping[str, float]
    """Tier -> wall-clock end of its hold."""


def parse(reply: list[bytes]) -> Pooled:
    counts: dict[str, dict[str, int]] = {}
    holds: dict[str, float] = {}
    for name, value in zip(reply[::2], reply[1::2], strict=True):
        tier, _, kind = name.decode().rpartition(":")  # `{tier}:{kind}`; a tier may hold ':'
        if kind == "hold":
            holds[tier] = float(value)
        elif kind in FIELDS:
            counts.setdefault(tier, {})[kind] = int(value)
    return Pooled(counts, holds)


def adopt(
    pooled: Pooled, pending: Turn, wall: float
) -> tuple[dict[str, dict[str, int]], dict[str, float], dict[str, float]]:
    """A worker's view after a turn, at wall-clock `wall`: (tier -> its counts: the pool's plus
    what this worker counted meanwhile, `pending`; the holds still running: tier -> end; the
    holds over that nobody has cleared: tier -> end, for the next turn to clear with their
    sums, which the view leaves out already)."""
    over = {tier: end for tier, end in pooled.holds.items() if end <= wall}
    running = {tier: end for tier, end in pooled.holds.items() if end > wall}
    counts = {
        tier: {name: int(c.get(name, 0)) for name in FIELDS}
        for tier, c in pooled.counts.items()
        if tier not in over
    }
    for (tier, name), amount in pending.counts.items():
        row = counts.setdefault(tier, dict.fromkeys(FIELDS, 0))
        row[name] += amount
    return counts, running, over


class SharedEvidence:
    def __init__(self, url: str) -> None:
        self._client = fast_client(url, TIMEOUT_S, connect_timeout_s=0.5)
        self._sync = Script(SYNC)

    async def sync(self, tenant: str, turn: Turn) -> Pooled:
        """Send `turn`, read back every worker's sums. Raises on any Redis failure."""
        args: list[str | int | float] = []
        for changes in (turn.ended, turn.started):
            args.append(len(changes))
            for tier, end in changes.items():
                args += [tier, round(end, 3)]
        args.append(len(turn.counts))
        for (tier, name), amount in turn.counts.items():
            args += [f"{tier}:{name}", amount]
        args.append(TTL_S)
        reply = await self._client.run(self._sync, [PREFIX + tenant], args)
        return parse(reply)

    async def aclose(self) -> None:
        await self._client.aclose()

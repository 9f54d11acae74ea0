"""Sticky-upward conversations: the highest tier a conversation was served by, so that its later
turns never bounce down (`routing.conversation: sticky_up`).

A conversation is known without server state from its opening: a digest of the tenant, the
system prompt and the first user message, which every later turn repeats. What is kept is one
tier name per conversation, TTL'd: in memory (bounded, least recently used first) or in Redis
(`limits.store: redis`: shared by every replica). The store is best effort: when it is away the
turn is routed on its own and nothing fails.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from rung.redisconn import fast_client
from rung.resp import Script

log = logging.getLogger("rung.router")
PREFIX = "rung:conv:"
TIMEOUT_S = 0.05
RAISE = """
-- KEYS[1] the conversation; ARGV[1] the tier that answered, ARGV[2] the TTL in seconds,
-- ARGV[3..] the ladder, smallest tier first. One step, so two replicas raising the same
-- conversation at once can never lower it (a read then a write could).
local function rank(name)
  for i = 3, #ARGV do
    if ARGV[i] == name then return i end
  end
  return -1
end
local tier = ARGV[1]
local current = redis.call('GET', KEYS[1])
if current and rank(current) >= rank(tier) then tier = current end
redis.call('SET', KEYS[1], tier, 'EX', ARGV[2])
return tier
"""


def conversation_key(tenant: str, payload: dict[str, Any], answer: str | None = None) -> str | None:
    """The digest of a chat's opening: its system prompt, first user message and the first
    answer, which every later turn repeats (the answer tells apart two conversations that
    began with the same question). A first turn has no answer in its messages yet: its key is
    made from the `answer` it got. None: not a chat, or nothing to key on."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    system = _first(messages, "system")
    first = _first(messages, "user")
    replied = _first(messages, "assistant")
    if first is None:
        return None
    if replied is not None:
        answer_text: Any = replied.get("content")
    elif answer is not None:
        answer_text = answer
    else:
        return None
    opening = [tenant, (system or {}).get("content"), first.get("content"), answer_text]
    return hashlib.sha256(orjson.dumps(opening)).hexdigest()[:32]


def answer_text(body: dict[str, Any]) -> str | None:
    """The first choice's message content of a chat answer (None: none)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _first(messages: list[Any], role: str) -> dict[str, Any] | None:
    return next((m for m in messages if isinstance(m, dict) and m.get("role") == role), None)


class Conversations(Protocol):
    async def floor(self, key: str) -> str | None: ...

    async def raise_to(self, key: str, tier: str, ladder: Sequence[str]) -> None:
        """The conversation's tier is at least `tier` from now on (`ladder`: the served tiers'
        names, smallest first; a stored name not on it ranks below all)."""
        ...

    async def aclose(self) -> None: ...


class MemoryConversations:
    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self._tiers: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def floor(self, key: str) -> str | None:
        found = self._tiers.get(key)
        if found is None:
            return None
        if self.clock() - found[1] > self.ttl_s:
            del self._tiers[key]
            return None
        return found[0]

    async def raise_to(self, key: str, tier: str, ladder: Sequence[str]) -> None:
        current = await self.floor(key)
        if current is not None and _rank(ladder, current) >= _rank(ladder, tier):
            tier = current
        self._tiers[key] = (tier, self.clock())  # a turn refreshes the TTL
        self._tiers.move_to_end(key)
        while len(self._tiers) > self.max_entries:
            self._tiers.popitem(last=False)

    async def aclose(self) -> None:
        return None


class RedisConversations:
    def __init__(self, url: str, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._client = fast_client(url, TIMEOUT_S, connect_timeout_s=0.5)
        self._raise = Script(RAISE)
        self._warned = False

    async def floor(self, key: str) -> str | None:
        try:
            value = await self._client.call("GET", PREFIX + key)
        except Exception as exc:  # best effort: route the turn on its own
            self._warn(exc)
            return None
        self._warned = False
        return value.decode() if isinstance(value, bytes) else value

    async def raise_to(self, key: str, tier: str, ladder: Sequence[str]) -> None:
        try:
            await self._client.run(
                self._raise, [PREFIX + key], [tier, max(1, int(self.ttl_s)), *ladder]
            )
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:  # once per outage, never per request
            log.warning("conversation store unavailable (turns routed alone): %s", exc)
            self._warned = True

    async def aclose(self) -> None:
        await self._client.aclose()


def _rank(ladder: Sequence[str], name: str) -> int:
    return ladder.index(name) if name in ladder else -1

"""What turns a routed decision into the request's plan for this tenant and conversation: the
conversation's sticky-upward floor, the tiers a capability ruled out (in the reason), and
remembering the tier that answered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rung.config import RungConfig
from rung.router.conversations import Conversations, answer_text, conversation_key
from rung.router.decide import Decision
from rung.router.plan import Plan, Served

Json = dict[str, Any]


class Steering:
    def __init__(self, config: RungConfig, conversations: Conversations | None) -> None:
        self.config = config
        self.conversations = conversations
        self.ladder = tuple(t.name for t in config.tiers)

    async def steer(
        self,
        decision: Decision,
        allowed: tuple[int, ...] | None,
        skipped: list[str],
        conversation: str | None,
    ) -> Decision:
        """The routed decision, raised to the conversation's tier (sticky upward) and annotated
        with the tiers a capability ruled out."""
        reason = decision.reason
        tier = decision.tier
        if skipped:
            reason += "; skipped " + ", ".join(skipped)
        if conversation is not None and self.conversations is not None:
            name = await self.conversations.floor(conversation)
            floor = self.config.tier_index(name) if name is not None else None
            if floor is not None and floor > tier and (allowed is None or floor in allowed):
                tier = floor
                reason += f"; sticky {name} (this conversation was served there)"
        return replace(decision, tier=tier, reason=reason)

    async def remember(self, plan: Plan, served: Served, payload: Json, body: Json | None) -> None:
        """After the answer: the conversation's tier is at least the one that answered. A first
        turn's conversation is keyed by the answer it just got."""
        if not plan.sticky or self.conversations is None or served.tier < 0:
            return
        key = plan.conversation or conversation_key(
            plan.tenant, payload, answer_text(body) if body is not None else None
        )
        if key is None:
            return
        await self.conversations.raise_to(key, self.ladder[served.tier], self.ladder)

"""A cache entry and its wire form (for Redis), validated on the way back in.

An entry keeps what the gateway needs to serve a hit and to judge it: the answer, where it came
from (tier, model), the tier the router had decided and under which routing setup, the answer's
confidence, its usage and its creation time, the matched text (for the near-miss guard) and its
embedding. Decoding checks the format version, the tenant, the field types and the vector's size:
a corrupt or foreign entry raises `BadEntry` and is skipped, never served.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

FORMAT = 1

Vector = npt.NDArray[np.float32]


class BadEntry(ValueError):
    """An entry that cannot be trusted (corrupt, foreign, another format)."""


@dataclass(frozen=True)
class Entry:
    key: str
    """The exact key: sha256 of scope + text."""
    tenant: str
    """The tenant (or sharing group) that owns it."""
    scope: str
    text: str
    body: bytes
    """The answer as the client received it (an OpenAI JSON body)."""
    tier: str
    model: str
    decided: str
    """The tier the router had chosen when this answer was made."""
    route_key: str
    """Fingerprint of the routing setup that made that choice (classifier, target, tiers)."""
    vector: Vector | None = None
    confidence: float | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def size(self) -> int:
        """Approximate bytes held: what bounds a tenant's memory."""
        vector = 0 if self.vector is None else self.vector.nbytes
        return len(self.body) + len(self.text.encode()) + vector + 512

    def encode(self) -> dict[str, bytes]:
        """Redis hash fields."""
        meta = {
            "format": FORMAT,
            "key": self.key,
            "tenant": self.tenant,
            "scope": self.scope,
            "text": self.text,
            "tier": self.tier,
            "model": self.model,
            "decided": self.decided,
            "route_key": self.route_key,
            "confidence": self.confidence,
            "usage": dict(self.usage),
            "created": self.created,
        }
        fields = {"meta": orjson.dumps(meta), "body": self.body}
        if self.vector is not None:
            fields["vector"] = np.asarray(self.vector, dtype="<f4").tobytes()
        return fields


_STR_FIELDS = ("key", "tenant", "scope", "text", "tier", "model", "decided", "route_key")


def decode(fields: Mapping[bytes | str, bytes], tenant: str, dimension: int | None) -> Entry:
    """An entry from its Redis hash; `BadEntry` unless whole, this tenant's and sized right."""
    raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
    try:
        meta = orjson.loads(raw["meta"])
        body = raw["body"]
    except (KeyError, orjson.JSONDecodeError) as exc:
        raise BadEntry(f"unreadable entry: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadEntry("not a rung cache entry of this format")
    if any(not isinstance(meta.get(name), str) for name in _STR_FIELDS):
        raise BadEntry("entry fields are missing or of the wrong type")
    if meta["tenant"] != tenant:
        raise BadEntry("entry belongs to another tenant")
    confidence = meta.get("confidence")
    if confidence is not None and not isinstance(confidence, int | float):
        raise BadEntry("confidence is not a number")
    if not isinstance(meta.get("created"), int | float) or not isinstance(meta.get("usage"), dict):
        raise BadEntry("entry fields are missing or of the wrong type")
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadEntry("the stored answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        raise BadEntry("the stored answer is not a completion")
    vector = None
    if "vector" in raw:
        vector = np.frombuffer(raw["vector"], dtype="<f4").astype(np.float32)
        if dimension is not None and vector.shape != (dimension,):
            raise BadEntry(f"vector has {vector.size} dimensions, expected {dimension}")
        if not np.isfinite(vector).all():
            raise BadEntry("vector is not finite")
    return Entry(
        key=meta["key"],
        tenant=meta["tenant"],
        scope=meta["scope"],
        text=meta["text"],
        body=bytes(body),
        tier=meta["tier"],
        model=meta["model"],
        decided=meta["decided"],
        route_key=meta["route_key"],
        vector=vector,
        confidence=None if confidence is None else float(confidence),
        usage=meta["usage"],
        created=float(meta["created"]),
    )

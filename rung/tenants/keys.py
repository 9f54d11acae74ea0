"""API keys: generated, hashed for the config, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from rung.config import TenantConfig
from rung.errors import Unauthorized

PREFIX = "rung-"


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The form the config stores: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Bearer key -> tenant. Every stored hash is compared, each in constant time, so the time
    taken says nothing about which key (or how much of one) matched."""

    def __init__(self, tenants: Iterable[TenantConfig], open_tenant: str | None = None) -> None:
        self._hashes: list[tuple[bytes, str]] = []
        for tenant in tenants:
            for key in tenant.keys:
                text = key.get_secret_value()
                hashed = text if text.startswith("sha256:") else hash_key(text)
                self._hashes.append((hashed.encode(), tenant.name))
        self.open_tenant = open_tenant

    def tenant_for(self, authorization: str | None) -> str:
        if not authorization:
            if self.open_tenant is not None:
                return self.open_tenant
            raise Unauthorized("You didn't provide an API key. Send 'Authorization: Bearer <key>'.")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <key>'.")
        given = hash_key(key).encode()
        found = None
        for hashed, tenant in self._hashes:
            if hmac.compare_digest(given, hashed):
                found = tenant
        if found is None:
            raise Unauthorized("Incorrect API key provided.")
        return found

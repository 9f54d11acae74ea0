"""The base of every config model: frozen, and unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def check_redis_url(url: SecretStr) -> SecretStr:
    """A Redis URL rung can connect with: `redis://`, `rediss://`, `unix://`, or a cluster's
    `redis+cluster://host:port[,host:port...]` (`rediss+cluster://` with TLS). The error names
    the form expected, never the URL (it may carry a password)."""
    from rung.resp import parse_url
    from rung.resp_cluster import is_cluster, parse_cluster_url

    raw = url.get_secret_value()
    if raw == "**********":
        raise ValueError(
            "is the masked placeholder that /admin/config shows, not a URL: write the real one "
            "(or `${REDIS_URL}`)"
        )
    if is_cluster(raw):
        parse_cluster_url(raw)
    else:
        parse_url(raw)
    return url

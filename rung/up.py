"""`rung up`: start the local llama.cpp tiers of a config, then the gateway in front of them;
Ctrl-C or SIGTERM stops everything it started."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from pathlib import Path

from pydantic import SecretStr

from rung.backends.local.launcher import LocalLadder
from rung.config import RungConfig
from rung.router.logs import configure_logging
from rung.router.serve import serve, sigterm_exits

log = logging.getLogger("rung.up")


def with_run_key(config: RungConfig) -> tuple[RungConfig, str | None]:
    """A config without an admin key, served on loopback, gets a key for this run only, so the
    dashboard and admin API of a local ladder work without editing the file. Never on a
    non-loopback address: there an operator sets `server.admin_key` on purpose."""
    server = config.server
    if server.admin_key is not None or not _loopback(server.host):
        return config, None
    key = "run-" + secrets.token_urlsafe(18)
    update = {"admin_key": SecretStr(key)}
    return config.model_copy(update={"server": server.model_copy(update=update)}), key


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_up(config: RungConfig, models_dir: Path, log_dir: Path, allow_fetch: bool) -> int:
    configure_logging(config.server.log_level, config.server.log_format)
    sigterm_exits()
    config, key = with_run_key(config)
    with LocalLadder(config, models_dir, log_dir, allow_fetch=allow_fetch) as ladder:
        ready = ladder.start()
        for tier in ready.tiers:
            urls = ", ".join(b.url for b in tier.backends)
            log.info("tier %-8s model %s at %s", tier.name, tier.model, urls)
        log.info(
            "gateway on http://%s:%d/v1 (model 'rung' routes; Ctrl-C stops)",
            ready.server.host,
            ready.server.port,
        )
        if key is not None:  # the terminal of whoever started it; never a request log
            base = f"http://{ready.server.host}:{ready.server.port}"
            print(
                f"dashboard: {base}/dashboard#key={key}\n"
                f"admin API key for this run (no server.admin_key in the config): {key}",
                flush=True,
            )
        serve(ready)
    return 0

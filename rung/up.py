"""`rung up`: start the local llama.cpp tiers of a config, then the gateway in front of them;
Ctrl-C or SIGTERM stops everything it started."""

from __future__ import annotations

import logging
from pathlib import Path

from rung.backends.local.launcher import LocalLadder
from rung.config import RungConfig
from rung.router.logs import configure_logging
from rung.router.serve import serve, sigterm_exits

log = logging.getLogger("rung.up")


def run_up(config: RungConfig, models_dir: Path, log_dir: Path, allow_fetch: bool) -> int:
    configure_logging(config.server.log_level, config.server.log_format)
    sigterm_exits()
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
        serve(ready)
    return 0

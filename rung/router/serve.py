"""Run the gateway in the foreground with uvicorn (one or several workers)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from rung.config import RungConfig
from rung.router.app import create_app
from rung.router.metrics import MULTIPROC_ENV
from rung.router.protocol import bounded


def sigterm_exits() -> None:
    """SIGTERM and SIGINT unwind `finally` blocks, so child processes (model servers) are stopped
    instead of orphaned, whether they arrive during startup or after uvicorn's graceful shutdown
    (which re-raises the signal it caught)."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    # A shell starts background jobs with SIGINT ignored; Ctrl-C / kill -INT must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def serve(config: RungConfig, workers: int = 1, config_path: Path | None = None) -> None:
    server = config.server
    app: Any
    metrics_dir: str | None = None
    if workers > 1:
        if config_path is None:
            raise ValueError("several workers need the config file's path")
        # Each worker process builds its own app from the same file.
        os.environ["RUNG_CONFIG"] = str(config_path.resolve())
        if not os.environ.get(MULTIPROC_ENV):
            # Workers write their metrics here and any of them can expose the sum. Fresh per
            # start: files left from an earlier run would be counted again.
            metrics_dir = tempfile.mkdtemp(prefix="rung-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        app = "rung.router.app:app_from_env"
    else:
        app = create_app(config, config_path, serving=True)
    try:
        uvicorn.run(
            app,
            factory=workers > 1,
            workers=workers,
            host=server.host,
            port=server.port,
            log_level=server.log_level,
            access_log=server.access_log,
            # X-Forwarded-For only feeds the access log's client address (rung itself never
            # reads it), so rewriting each request's scope for it (~1 us) waits for the access log.
            proxy_headers=server.access_log,
            timeout_graceful_shutdown=30,
            timeout_keep_alive=int(max(1, server.keep_alive_timeout_s)),
            http=bounded(server.header_timeout_s, server.max_header_bytes),
            # JSON logs: uvicorn's own loggers go through rung's handler as well.
            log_config=None if server.log_format == "json" else LOGGING_CONFIG,
        )
    finally:
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)

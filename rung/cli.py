"""`rung` command line: the only module that parses argv."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from rung.config import load_config
from rung.errors import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from rung.router import create_app

    config = load_config(args.config)
    server = config.server.model_copy(
        update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    )
    logging.basicConfig(level=server.log_level.upper(), format=LOG_FORMAT)
    app: Any
    if args.workers > 1:
        # Each worker process builds its own app from the same file.
        os.environ["RUNG_CONFIG"] = os.path.abspath(args.config)
        app = "rung.router.app:app_from_env"
    else:
        app = create_app(config)
    uvicorn.run(
        app,
        factory=args.workers > 1,
        workers=args.workers,
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        access_log=server.access_log,
        timeout_graceful_shutdown=30,
    )
    return 0


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    tiers = ", ".join(f"{t.name} ({t.model}, {len(t.backends)} backend(s))" for t in config.tiers)
    print(f"{args.path}: OK: {len(config.tiers)} tier(s): {tiers}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rung.demo import run_demo

    return run_demo(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rung",
        description="An LLM gateway that routes each "
        "request to the smallest model able to answer it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="admin config file (YAML)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    config = sub.add_parser("config", help="admin config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(run=_config_check)

    demo = sub.add_parser("demo", help="the gateway in front of two fake model servers")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code

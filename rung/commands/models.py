"""`rung models list | fetch` commands: what the parsed arguments (rung.cli) ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from rung.errors import RungError


def run_models_list(args: argparse.Namespace) -> int:
    from rung.classifiers import quantized, static
    from rung.weights.fetch import status

    for item in status(Path(args.dir)):
        mark = "installed" if item.verified else "missing  "
        size = item.model.size_bytes / 1e6
        print(f"{mark}  {item.model.name:20} {size:7.0f} MB  {item.model.note}")
    built = static.load_table(Path(args.dir) / static.FILENAME) is not None
    print(
        f"{'installed' if built else 'missing  '}  {static.NAME:20} {31:7.0f} MB  "
        f"static table distilled from {static.TEACHER}: the routing embedder"
    )
    built = quantized.is_built(Path(args.dir))
    print(
        f"{'installed' if built else 'missing  '}  {quantized.NAME:20} {23:7.0f} MB  "
        f"{quantized.TEACHER} re-quantized for int8 arithmetic: the cache's embedder"
    )
    print(f"model directory: {args.dir}")
    return 0


def run_models_fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rung.classifiers import quantized, static
    from rung.classifiers.embedder import OnnxEmbedder
    from rung.weights.catalog import CATALOG
    from rung.weights.fetch import fetch, is_verified

    derived = {static.NAME: static.TEACHER, quantized.NAME: quantized.TEACHER}
    names = [derived.get(n, n) for n in args.names] or list(CATALOG)
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
    if not args.names or static.NAME in args.names or static.TEACHER in args.names:
        teacher = CATALOG[static.TEACHER]
        if static.load_table(Path(args.dir) / static.FILENAME) is None:
            static.build_table(
                OnnxEmbedder(Path(args.dir) / teacher.filename, threads=2),
                Path(args.dir) / static.FILENAME,
                teacher.sha256,
            )
        print(
            f"{static.NAME}: distilled from {static.TEACHER}, at {Path(args.dir) / static.FILENAME}"
        )
    if not args.names or quantized.NAME in args.names or quantized.TEACHER in args.names:
        teacher = CATALOG[quantized.TEACHER]
        if not quantized.is_built(Path(args.dir)):
            quantized.build(
                Path(args.dir) / teacher.filename,
                Path(args.dir) / quantized.FILENAME,
                teacher.sha256,
            )
        print(
            f"{quantized.NAME}: built from {quantized.TEACHER}, at "
            f"{Path(args.dir) / quantized.FILENAME}"
        )
    return 0

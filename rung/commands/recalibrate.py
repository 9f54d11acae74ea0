"""`rung recalibrate`: refit the confidence calibrator on recorded traffic (shadow checks and
escalations) plus labelled outcomes, judge it against the serving one on the newest answers,
and replace the serving file only when it is better."""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path
from typing import Any

from rung.commands.promote import log_decision, reload_gateway
from rung.errors import RungError


def run_recalibrate(args: argparse.Namespace) -> int:
    from rung.classifiers.outcomes import load_ladder, read_rows
    from rung.confidence.calibrator import load_calibrator
    from rung.confidence.fit import examples, fit
    from rung.confidence.promote import calibrator_verdict, judge_tier

    ladder = load_ladder(args.ladder)
    tiers = {t.name: t.model for t in ladder.tiers if isinstance(t.model, str)}
    records = sorted(
        (r for path in args.records for r in read_rows(Path(path))),
        key=lambda r: float(r.get("time", 0)),
    )
    if not 0 < args.holdout < 1:
        raise RungError("--holdout must be between 0 and 1")
    cut = len(records) - math.ceil(args.holdout * len(records))
    older, newest = records[:cut], records[cut:]
    labelled = [r for path in args.data or [] for r in read_rows(Path(path))]
    serving_path = Path(args.calibrator)
    serving = load_calibrator(serving_path)
    try:
        candidate = fit(labelled + older, tiers, serving.probe_tokens)
    except ValueError as exc:
        raise RungError(f"cannot fit a candidate: {exc}") from None
    judged: dict[str, Any] = {}
    for tier, model in tiers.items():
        result = judge_tier(serving, candidate, tier, examples(newest, model, None))
        if result is not None:
            judged[tier] = result
    verdict = calibrator_verdict(judged, args.min_heldout)
    print(
        f"candidate fitted on {len(labelled)} labelled outcomes and {len(older)} records; "
        f"judged on the newest {len(newest)} records: {verdict.reason}"
    )
    record: dict[str, Any] = {"action": "promote" if verdict.promote else "refuse",
                              **verdict.to_dict(), "calibrator": str(serving_path)}  # fmt: skip
    if verdict.promote and args.apply:
        shutil.copyfile(serving_path, serving_path.with_name(serving_path.name + ".previous"))
        staged = serving_path.with_name(serving_path.name + ".incoming")
        candidate.save(staged)
        staged.replace(serving_path)
        record["applied"] = True
        print(f"promoted: {serving_path} replaced ({serving_path}.previous the old one)")
    log_decision(args, record)
    if not verdict.promote:
        return 3
    return reload_gateway(args) if args.apply else 0

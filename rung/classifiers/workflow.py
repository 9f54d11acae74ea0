"""`rung train` and `rung eval`: outcomes + ladder (+ embedder) -> classifier -> metrics and curve.

Embeddings of a data set are cached on disk by (embedder, texts) so that re-training and
cross-validation do not embed the same prompts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from rung.classifiers.answer_fit import fit_verifier, readings
from rung.classifiers.answer_fit import rows as answer_rows
from rung.classifiers.cascade_report import policy_held, section
from rung.classifiers.embedder import Embedder
from rung.classifiers.evaluate import envelope, summarize
from rung.classifiers.goal import Point as GoalPoint
from rung.classifiers.goal import curve as goal_curve
from rung.classifiers.model import DifficultyModel, Held, text_digests
from rung.classifiers.outcomes import DataError, Ladder, LadderData, ladder_data, read_outcomes
from rung.classifiers.train import Method, train
from rung.confidence.calibrator import Calibrator, open_calibrator
from rung.config import EscalationConfig

Matrix = npt.NDArray[np.float32]
Array = npt.NDArray[np.float64]


def embeddings_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rung" / "embeddings"


def embed_all(
    embedder: Embedder,
    identity: dict[str, str],
    texts: list[str],
    cache_dir: Path | None = None,
    batch: int = 32,
) -> Matrix:
    """Embed many texts (similar lengths batched together) with a progress bar. With a cache
    directory, vectors are kept per text and per embedder, so any later run over any mix of the
    same prompts (another ladder, cross-validation, eval after train) embeds nothing twice."""
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    name = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24] + ".npz"
    store = cache_dir / name if cache_dir is not None else None
    known: dict[str, Matrix] = {}
    if store is not None and store.exists():
        with np.load(store, allow_pickle=False) as cached:
            known = dict(zip(cached["keys"].tolist(), cached["vectors"], strict=True))
    missing = sorted(
        {k: i for i, k in enumerate(keys) if k not in known}.values(), key=lambda i: len(texts[i])
    )
    with tqdm(
        total=len(missing),
        desc="embedding",
        unit="prompt",
        file=sys.stderr,
        disable=None if missing else True,
    ) as bar:
        for start in range(0, len(missing), batch):
            rows = missing[start : start + batch]
            for i, vector in zip(rows, embedder.embed([texts[i] for i in rows]), strict=True):
                known[keys[i]] = vector
            bar.update(len(rows))
    if store is not None and missing:
        store.parent.mkdir(parents=True, exist_ok=True)
        partial = store.with_suffix(".partial.npz")
        np.savez(partial, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        partial.replace(store)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def load_data(files: list[Path], ladder: Ladder) -> LadderData:
    data = ladder_data(read_outcomes(files), ladder)
    if len(data.outcomes) == 0:
        models = ", ".join(str(t.model) for t in ladder.tiers)
        raise DataError(
            f"no prompt in {', '.join(map(str, files))} has outcomes for every "
            f"tier of the ladder ({models})"
        )
    return data


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SPLIT = {"train": (0, 70), "validation": (70, 85), "test": (85, 100)}
"""Buckets of a prompt's text digest (mod 100): a split by text, stable across runs, files and
machines. Identical texts (after whitespace and case folding) share a bucket."""


def split(data: LadderData) -> dict[str, npt.NDArray[np.int64]]:
    buckets = text_digests([o.prompt for o in data.outcomes]) % np.uint64(100)
    return {
        name: np.flatnonzero((buckets >= lo) & (buckets < hi)) for name, (lo, hi) in SPLIT.items()
    }


def _chars(data: LadderData, ladder: Ladder) -> Array:
    return data.costs / ladder.prices * 1e6 * 4


CALIBRATOR = EscalationConfig().calibrator
"""The confidence calibrator a config uses unless it names another (`escalation.calibrator`)."""
FOLDS = 5
"""Folds of the fitting prompts whose out-of-fold predictions the goals are met on."""


def fit(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method,
    files: list[Path],
    calibrator: str = CALIBRATOR,
) -> DifficultyModel:
    """Dedupe, split by text, fit on the fitting prompts (train + validation buckets), and keep
    in the model what goals are met on and what is reported. Answers whose records kept logprob
    `signals` give the verifier `calibrator`'s confidence as an input (serve with the same
    `escalation.calibrator`):

    - "validation": out-of-fold predictions for every fitting prompt (5 folds by text, each
      predicted by a model fitted on the other four), so a goal is met on all of them (85% of
      the data) instead of a 15% slice: on a few hundred labelled prompts a 15% slice left
      `keep: 0.9` and `keep: 0.95` ordered by noise;
    - "test": the final model's predictions for the test prompts, which nothing saw."""
    rows = _dedupe_rows(data)
    data, embeddings = subset(data, rows), embeddings[rows]
    parts = split(data)
    fitting = np.sort(np.concatenate([parts["train"], parts["validation"]]))
    summary = {
        "files": [{"name": f.name, "sha256": file_digest(f)} for f in files],
        "ladder": ladder.name,
        "prompts": len(data.outcomes),
        "split": {
            "train": len(fitting),
            "validation": len(fitting),
            "validation_kind": f"out-of-fold ({FOLDS} folds by text)",
            "test": len(parts["test"]),
        },
        "tier_accuracy": [round(float(a), 4) for a in data.scores.mean(axis=0)],
        "other_models": int(data.others.shape[1]),
    }
    tiers = [t.model_dump() for t in ladder.tiers]

    def trained(idx: npt.NDArray[np.int64], training: dict[str, Any] | None) -> DifficultyModel:
        part = subset(data, idx)
        texts = [o.prompt for o in part.outcomes]
        return train(
            embeddings[idx], texts, part.scores, part.others, tiers, identity, method, training
        )

    def predict(with_model: DifficultyModel, idx: npt.NDArray[np.int64]) -> Array:
        return with_model.predict(embeddings[idx], [data.outcomes[i].prompt for i in idx])

    model = trained(fitting, summary)
    chars = _chars(data, ladder)
    prompt_chars = np.array([len(o.prompt) for o in data.outcomes], dtype=np.float64)
    model.training["answer_chars"] = [
        round(float(c), 1) for c in (chars[fitting] - prompt_chars[fitting, None]).mean(axis=0)
    ]
    held: dict[str, Held] = {}
    folds = (text_digests([data.outcomes[i].prompt for i in fitting]) // 100) % FOLDS
    if len(fitting) >= 2 * FOLDS:
        out_of_fold = np.zeros((len(fitting), len(tiers)))
        for k in range(FOLDS):
            inside = folds != k
            if inside.all() or not inside.any():
                continue
            out_of_fold[~inside] = predict(trained(fitting[inside], None), fitting[~inside])
        held["validation"] = Held(
            out_of_fold, data.scores[fitting], chars[fitting], prompt_chars=prompt_chars[fitting]
        )
    if len(parts["test"]):
        idx = parts["test"]
        held["test"] = Held(
            predict(model, idx), data.scores[idx], chars[idx], prompt_chars=prompt_chars[idx]
        )
    read = readings(data, ladder, open_calibrator(calibrator))
    verifier = None
    if read is not None and "validation" in held:
        if read.confidence is not None:
            model.training["verifier_calibrator"] = calibrator
        verifier, verified = fit_verifier(
            read.subset(fitting),
            held["validation"].probabilities,
            data.scores[fitting] >= 0.5,
            folds,
            [t.name for t in ladder.tiers],
        )
        held["validation"] = replace(held["validation"], verified=verified, keys=read.keys[fitting])
        if "test" in held:
            idx = parts["test"]
            test = read.subset(idx)
            rows_test = answer_rows(test.features, held["test"].probabilities, test.confidence)
            held["test"] = replace(
                held["test"], verified=verifier.probabilities(rows_test), keys=read.keys[idx]
            )
    texts = [data.outcomes[i].prompt for i in fitting]
    model = replace(model, held=held, trained_texts=text_digests(texts), verifier=verifier)
    if "test" in held:
        model.training["held_out"] = headline_numbers(held_out_report(model, ladder.prices))
    return model


def validation_curve(model: DifficultyModel, prices: Array) -> list[GoalPoint] | None:
    validation = model.held.get("validation")
    if validation is None:
        return None
    return goal_curve(validation.probabilities, validation.scores, validation.costs(prices), prices)


def with_cascade(
    metrics: dict[str, Any], model: DifficultyModel, held: Held, prices: Array, tiers: list[int]
) -> dict[str, Any]:
    """`metrics` plus the cascade section for `held` (the model's tiers `tiers`), its goals
    fitted on the model's validation predictions of the same tiers."""
    validation = model.held.get("validation")
    if validation is None or validation.prompt_chars is None or held.prompt_chars is None:
        return metrics
    chars = [model.answer_chars[k] for k in tiers]
    names = [model.tier_names[k] for k in tiers]
    return {
        **metrics,
        "cascade": section(
            policy_held(held, prices, chars),
            policy_held(validation.columns(tiers), prices, chars),
            names,
        ),
    }


def held_out_report(model: DifficultyModel, prices: Array) -> dict[str, Any]:
    """metrics of the model's own test split (prompts no fitting or goal saw)."""
    test = model.held["test"]
    metrics = summarize(
        test.probabilities,
        test.scores,
        test.costs(prices),
        prices,
        validation_curve(model, prices),
    )
    return with_cascade(metrics, model, test, prices, list(range(len(model.tiers))))


def headline_numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a manifest records of a held-out evaluation: the curve's figures and the goals."""
    keep = ("prompts", "router", "threshold_rule", "baseline", "oracle", "calibration_error")
    out = {**{k: metrics[k] for k in keep}, "goals": metrics.get("goals", [])}
    if "cascade" in metrics:
        out["cascade"] = {k: v for k, v in metrics["cascade"].items() if k != "curve"}
    return out


def served(
    model: DifficultyModel, data: LadderData, embeddings: Matrix, ladder: Ladder
) -> tuple[Held, list[int], LadderData]:
    """Fresh prompts as the gateway would see them: (their held split, each column's
    classifier tier, the prompts kept). The model's training prompts are left out; with answer
    texts, each answer is read and verified."""
    names = model.tier_names
    missing = [t.name for t in ladder.tiers if t.name not in names]
    if missing:
        raise DataError(
            f"the ladder's tiers {missing} are not among the classifier's tiers {names}"
        )
    tiers = [names.index(t.name) for t in ladder.tiers]
    fresh = unseen_rows(data, [model])
    if len(fresh) == 0:
        raise DataError("every prompt of this data was used to train the classifier")
    part = subset(data, fresh)
    texts = [o.prompt for o in part.outcomes]
    probabilities = model.predict(embeddings[fresh], texts)[:, tiers]
    prompt_chars = np.array([len(t) for t in texts], dtype=np.float64)
    held = Held(probabilities, part.scores, _chars(part, ladder), prompt_chars=prompt_chars)
    read = readings(part, ladder, _calibrator_of(model))
    if read is not None and model.verifier is not None:
        verifier = model.verifier.columns(tiers)
        rows = answer_rows(read.features, probabilities, read.confidence)
        verified = verifier.probabilities(rows)
        held = replace(held, verified=verified, keys=read.keys)
    return held, tiers, part


def _calibrator_of(model: DifficultyModel) -> Calibrator | None:
    """The calibrator whose confidence the model's verifier learned from (None: none)."""
    name = model.training.get("verifier_calibrator")
    if not name:
        return None
    try:
        return open_calibrator(name)
    except ValueError as exc:
        raise DataError(f"the classifier's answer verifier needs its calibrator: {exc}") from None


def evaluate(
    model: DifficultyModel, data: LadderData, embeddings: Matrix, ladder: Ladder
) -> dict[str, Any]:
    """The model on other data (fresh prompts), as the gateway would serve it: its training
    prompts are left out, goals are met on its own validation split. A ladder of some of the
    model's tiers is served as a tenant capped to those tiers would be."""
    held, tiers, part = served(model, data, embeddings, ladder)
    validation = model.held.get("validation")
    curve = None
    if validation is not None:
        v = validation.columns(tiers)
        prices = ladder.prices
        curve = goal_curve(v.probabilities, v.scores, v.costs(prices), prices)
    metrics = summarize(held.probabilities, part.scores, part.costs, ladder.prices, curve)
    metrics = with_cascade(metrics, model, held, ladder.prices, tiers)
    left_out = len(_dedupe_rows(data)) - len(part.outcomes)
    return {"left_out_as_trained_on": int(left_out), **metrics}


def holdout(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method,
    files: list[Path],
    calibrator: str = CALIBRATOR,
) -> dict[str, Any]:
    """Fit on the train split, meet goals on validation, report the untouched test split."""
    model = fit(data, embeddings, ladder, identity, method, files, calibrator)
    return {"split": model.training["split"], **held_out_report(model, ladder.prices)}


def _dedupe_rows(data: LadderData) -> npt.NDArray[np.int64]:
    seen: set[int] = set()
    rows = []
    for i, digest in enumerate(text_digests([o.prompt for o in data.outcomes]).tolist()):
        if digest not in seen:
            seen.add(digest)
            rows.append(i)
    return np.array(rows, dtype=np.int64)


def unseen_rows(data: LadderData, models: list[DifficultyModel]) -> npt.NDArray[np.int64]:
    """Deduplicated rows whose prompt none of `models` was trained on."""
    rows = _dedupe_rows(data)
    digests = text_digests([data.outcomes[i].prompt for i in rows])
    seen = np.zeros(len(rows), dtype=bool)
    for model in models:
        seen |= np.isin(digests, model.trained_texts)
    return rows[~seen]


def cross_validate(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method,
    folds: int = 5,
    repeats: int = 3,
    files: list[Path] | None = None,
) -> dict[str, Any]:
    """A development aid, never a headline: k-fold CV over the train + validation splits (the
    test split stays untouched). Reports each metric's mean and std over the held-out folds."""
    rows = _dedupe_rows(data)
    data, embeddings = subset(data, rows), embeddings[rows]
    parts = split(data)
    pool = np.concatenate([parts["train"], parts["validation"]])
    data, embeddings = subset(data, pool), embeddings[pool]
    runs: list[dict[str, Any]] = []
    n = len(data.outcomes)
    texts = [o.prompt for o in data.outcomes]
    for repeat in range(repeats):
        assignment = np.random.default_rng(repeat).permutation(n) % folds
        for fold in range(folds):
            train_idx = np.flatnonzero(assignment != fold)
            test_idx = np.flatnonzero(assignment == fold)
            part = subset(data, train_idx)
            model = train(
                embeddings[train_idx],
                [texts[i] for i in train_idx],
                part.scores,
                part.others,
                [t.model_dump() for t in ladder.tiers],
                identity,
                method,
            )
            held = subset(data, test_idx)
            probabilities = model.predict(embeddings[test_idx], [texts[i] for i in test_idx])
            runs.append(summarize(probabilities, held.scores, held.costs, ladder.prices))

    def stat(path: tuple[str, ...]) -> dict[str, float]:
        values = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            values.append(float(value))
        return {"mean": float(np.mean(values)), "std": float(np.std(values))}

    keys = {
        "router_cost_at_95": ("router", "cost_at_95"),
        "threshold_rule_cost_at_95": ("threshold_rule", "cost_at_95"),
        "baseline_cost_at_95": ("baseline", "cost_at_95"),
        "oracle_cost_at_95": ("oracle", "cost_at_95"),
        "calibration_error": ("calibration_error",),
    }
    wins = sum(r["router"]["cost_at_95"] < r["baseline"]["cost_at_95"] for r in runs)
    return {
        "cross_validation": {
            "note": "train + validation splits only; a development aid, not a held-out figure",
            "folds": folds,
            "repeats": repeats,
            "held_out_runs": len(runs),
            "router_beats_baseline_in": f"{wins}/{len(runs)}",
            **{name: stat(path) for name, path in keys.items()},
        }
    }


def out_of_fold(
    data: LadderData,
    embeddings: Matrix,
    ladder: Ladder,
    identity: dict[str, str],
    method: Method = "blend",
    folds: int = 5,
    seed: int = 0,
) -> Array:
    """[prompts, tiers] probabilities, each from a model fitted on the other folds (for replays
    such as bench/escalation.py that need a routing decision for every labelled prompt)."""
    texts = [o.prompt for o in data.outcomes]
    probabilities = np.zeros(data.scores.shape)
    assignment = np.random.default_rng(seed).permutation(len(texts)) % folds
    for fold in range(folds):
        fit_rows, held = np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
        part = subset(data, fit_rows)
        model = train(
            embeddings[fit_rows],
            [texts[i] for i in fit_rows],
            part.scores,
            part.others,
            [t.model_dump() for t in ladder.tiers],
            identity,
            method,
        )
        probabilities[held] = model.predict(embeddings[held], [texts[i] for i in held])
    return probabilities


def subset(data: LadderData, rows: npt.NDArray[np.int64]) -> LadderData:
    return LadderData(
        [data.outcomes[i] for i in rows], data.scores[rows], data.costs[rows], data.others[rows]
    )


def plot_curve(metrics: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = metrics["sweep"]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(
        [p["cost"] for p in sweep],
        [p["score"] for p in sweep],
        "-o",
        markersize=2,
        label="rung classifier (utility rule, lambda swept)",
    )
    tiers = metrics["always_tier"]
    ax.plot(
        [t["cost"] for t in tiers],
        [t["score"] for t in tiers],
        "s",
        color="grey",
        label="always one tier",
    )
    hull = envelope([(t["cost"], t["score"]) for t in tiers])
    ax.plot(
        [c for c, _ in hull],
        [v for _, v in hull],
        "--",
        color="grey",
        label="baseline: best mix of single tiers",
    )
    oracle_x = metrics["oracle"]["cost_at_95"]
    ax.axhline(
        metrics["score_needed_for_95"],
        color="red",
        lw=0.8,
        ls=":",
        label="95% of the top tier's score",
    )
    ax.plot([oracle_x], [metrics["score_needed_for_95"]], "k*", label="oracle at 95%")
    router_x = metrics["router"]["cost_at_95"]
    if router_x != float("inf"):
        ax.axvline(router_x, color="C0", lw=0.8, ls=":")
    ax.set_xlabel("cost (normalised: 1 = every prompt to the top tier)")
    ax.set_ylabel("mean score")
    ax.set_title(title)
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline(metrics: dict[str, Any]) -> str:
    r, b, o = metrics["router"], metrics["baseline"], metrics["oracle"]
    need = metrics["score_needed_for_95"]
    lines = [
        f"cost_at_95: router {r['cost_at_95']:.3f}, no-information baseline "
        f"{b['cost_at_95']:.3f}, oracle {o['cost_at_95']:.3f} (legacy threshold rule "
        f"{metrics['threshold_rule']['cost_at_95']:.3f}; score needed {need:.3f}); "
        f"calibration error {metrics['calibration_error']:.3f}"
    ]
    for g in metrics.get("goals", []):
        v, h = g["validation"], g["held_out"]
        (k0, k1), (c0, c1) = h["keep_95"], h["cost_share_95"]
        verdict = "met" if v["met"] else "NOT met: closest point"
        lines.append(
            f"  goal {g['goal']:<20} lambda {g['lambda']:.3g}: held out keeps {h['keep']:.3f} "
            f"[{k0:.2f}, {k1:.2f}] at cost {h['cost_share']:.3f} [{c0:.2f}, {c1:.2f}] "
            f"(fitting prompts, {verdict}: {v['keep']:.3f} at {v['cost_share']:.3f})"
        )
    if metrics.get("goals"):
        lines.append("  [..]: 95% bootstrap intervals over the held-out prompts")
    cascade = metrics.get("cascade")
    if cascade:
        verifier = "answer verifier" if cascade["verifier"] else "no answer texts: prompt only"
        lines.append(
            f"cascade ({verifier}): cost_at_95 {cascade['cost_at_95']:.3f} (prompt only "
            f"{cascade['prompt_only_cost_at_95']:.3f}, perfect verifier "
            f"{cascade['perfect_verifier_cost_at_95']:.3f})"
        )
        for g in cascade["at_goals"]:
            h = g["held_out"]
            (k0, k1), (c0, c1) = h["keep_95"], h["cost_share_95"]
            lines.append(
                f"  goal {g['goal']:<20} {g['params']}: held out keeps {h['keep']:.3f} "
                f"[{k0:.2f}, {k1:.2f}] at cost {h['cost_share']:.3f} [{c0:.2f}, {c1:.2f}], "
                f"{h['calls_per_prompt']:.2f} calls a prompt, {h['two_or_more_calls']:.0%} "
                "paid two or more"
            )
    return "\n".join(lines)

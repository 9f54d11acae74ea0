"""The difficulty model: for each tier, P(the tier answers this prompt well).

Every variant rung trains compiles to one linear map over [embedding, standardised text
features] followed by a sigmoid, so the artifact is a few arrays plus a JSON manifest and loads
without pickle. `load` refuses a model fitted on a different embedder.

Format 2 also keeps, for the validation and test splits (prompts the weights never saw), each
prompt's predicted probabilities, its scores and its characters per tier: the gateway meets an
operator's goal on the validation split for whatever tiers and prices it serves, and reports
what that costs and keeps on the test split, without the data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rung.classifiers.features import FEATURE_NAMES, feature_matrix
from rung.classifiers.verifier import INPUTS, AnswerVerifier
from rung.errors import RungError

Array = npt.NDArray[np.float64]
FORMAT = "rung-difficulty/3"
READABLE = ("rung-difficulty/1", "rung-difficulty/2", FORMAT)
SPLITS = ("validation", "test")
OPTIONAL = ("verified", "keys", "prompt_chars")
"""Held arrays a format-3 classifier trained on answer texts has."""


class ModelError(RungError):
    """A classifier directory is missing, malformed, or made for another embedder."""


def sigmoid(x: Array) -> Array:
    # minimum/maximum rather than np.clip: the same values, a fraction of the call overhead
    out: Array = 1.0 / (1.0 + np.exp(np.minimum(np.maximum(-x, -40.0), 40.0)))
    return out


@dataclass(frozen=True)
class Held:
    """A held-out split as the classifier saw it: [prompts, tiers] arrays."""

    probabilities: Array
    scores: Array
    chars: Array
    """prompt + answer characters per tier (cost = price x chars / 4 tokens)."""
    verified: Array | None = None
    """The answer verifier's P(right) for each tier's answer (None: no answer texts)."""
    keys: npt.NDArray[np.int64] | None = None
    """Each tier's final answer as a 62-bit digest (-1: none found): answers agree when equal."""
    prompt_chars: Array | None = None
    """Characters of each prompt."""

    def costs(self, prices: Array) -> Array:
        return self.chars / 4 * prices / 1e6

    def columns(self, tiers: list[int]) -> Held:
        def cut(a: Any) -> Any:
            return None if a is None else a[:, tiers]

        return Held(
            self.probabilities[:, tiers],
            self.scores[:, tiers],
            self.chars[:, tiers],
            cut(self.verified),
            cut(self.keys),
            self.prompt_chars,
        )


@dataclass(frozen=True)
class DifficultyModel:
    tiers: list[dict[str, Any]]
    """[{"name", "model", "price"}] smallest first, as trained."""
    embedder: dict[str, str]
    """{"name", "sha256"} of the embedder whose vectors the weights expect."""
    weights: Array
    """[tiers, embedding_dim + features]"""
    bias: Array
    """[tiers]"""
    feature_mean: Array
    feature_scale: Array
    training: dict[str, Any] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)
    """"validation" and "test" splits (empty for a format-1 classifier)."""
    trained_texts: npt.NDArray[np.uint64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.uint64)
    )
    """64-bit digests of the training prompts (see `text_digests`): evaluation leaves them out."""
    verifier: AnswerVerifier | None = None
    """P(an answer is right) per tier, from its text (None: trained without answer texts)."""

    @property
    def answer_chars(self) -> list[float]:
        """Each tier's mean answer length on its training prompts (expected costs)."""
        chars = self.training.get("answer_chars")
        return [float(c) for c in chars] if chars else [0.0] * len(self.tiers)

    @property
    def tier_names(self) -> list[str]:
        return [str(t["name"]) for t in self.tiers]

    @property
    def fingerprint(self) -> str:
        """Short digest of the weights: changes whenever the predictions can."""
        digest = hashlib.sha256()
        for array in (self.weights, self.bias, self.feature_mean, self.feature_scale):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def design(self, embeddings: npt.NDArray[np.floating[Any]], texts: list[str]) -> Array:
        features = (feature_matrix(texts) - self.feature_mean) / self.feature_scale
        return np.hstack([np.asarray(embeddings, dtype=np.float64), features])

    @cached_property
    def _serving(self) -> tuple[Array, Array, Array]:
        """The weights arranged for one request at a time: the embedding part transposed and
        contiguous, the feature standardisation folded into the feature weights and the bias
        (the same logits, a few numpy calls fewer per request)."""
        width = self.weights.shape[1] - len(self.feature_mean)
        on_features = self.weights[:, width:] / self.feature_scale
        bias = self.bias - on_features @ self.feature_mean
        return np.ascontiguousarray(self.weights[:, :width].T), on_features.T.copy(), bias

    def predict(self, embeddings: npt.NDArray[np.floating[Any]], texts: list[str]) -> Array:
        """[prompts, tiers] success probabilities (the design matrix's product, in two parts:
        no copy of the embeddings on the request path)."""
        on_embedding, on_features, bias = self._serving
        logits = embeddings @ on_embedding + feature_matrix(texts) @ on_features
        return sigmoid(logits + bias)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        held = {
            f"{split}_{part}": getattr(h, part).astype(np.int64 if part == "keys" else np.float32)
            for split, h in self.held.items()
            for part in ("probabilities", "scores", "chars", *OPTIONAL)
            if getattr(h, part) is not None
        }
        if self.verifier is not None:
            held |= self.verifier.arrays()
        np.savez_compressed(
            directory / "weights.npz",
            weights=self.weights,
            bias=self.bias,
            feature_mean=self.feature_mean,
            feature_scale=self.feature_scale,
            trained_texts=self.trained_texts,
            **held,
        )
        manifest = {
            "format": FORMAT,
            "embedder": self.embedder,
            "features": list(FEATURE_NAMES),
            "tiers": self.tiers,
            "training": self.training,
        }
        if self.verifier is not None:
            manifest["verifier"] = {
                "inputs": list(INPUTS),
                "tiers": self.verifier.tiers,
                "report": self.verifier.report,
            }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load(directory: Path, embedder: dict[str, str] | None = None) -> DifficultyModel:
    """Load a classifier directory; with `embedder` given, refuse one fitted on another."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        with np.load(directory / "weights.npz", allow_pickle=False) as arrays:
            weights: dict[str, Array] = {
                k: np.asarray(arrays[k], dtype=np.float64)
                for k in arrays.files
                if k != "trained_texts" and not k.endswith("_keys")
            }
            keys = {
                k: np.asarray(arrays[k], dtype=np.int64)
                for k in arrays.files
                if k.endswith("_keys")
            }
            digests = np.asarray(arrays.get("trained_texts", np.zeros(0)), dtype=np.uint64)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the classifier in {directory}: {exc}") from None
    if manifest.get("format") not in READABLE:
        raise ModelError(f"{directory}: unknown classifier format {manifest.get('format')!r}")
    if manifest.get("features") != list(FEATURE_NAMES):
        raise ModelError(f"{directory}: made with other text features; retrain it")
    if embedder is not None and manifest["embedder"] != embedder:
        raise ModelError(
            f"{directory} was fitted on embedder {manifest['embedder']}, but rung runs "
            f"{embedder}: its predictions would be meaningless; retrain with `rung train`"
        )
    model = DifficultyModel(
        tiers=manifest["tiers"],
        embedder=manifest["embedder"],
        weights=weights["weights"],
        bias=weights["bias"],
        feature_mean=weights["feature_mean"],
        feature_scale=weights["feature_scale"],
        training=manifest.get("training", {}),
        held={
            split: Held(
                weights[f"{split}_probabilities"],
                weights[f"{split}_scores"],
                weights[f"{split}_chars"],
                weights.get(f"{split}_verified"),
                keys.get(f"{split}_keys"),
                weights.get(f"{split}_prompt_chars"),
            )
            for split in SPLITS
            if f"{split}_probabilities" in weights
        },
        trained_texts=digests,
        verifier=_verifier(manifest, weights, directory),
    )
    n, d = model.weights.shape
    if n != len(model.tiers) or model.bias.shape != (n,) or d <= len(FEATURE_NAMES):
        raise ModelError(f"{directory}: weights do not match the manifest")
    return model


def _verifier(
    manifest: dict[str, Any], weights: dict[str, Array], directory: Path
) -> AnswerVerifier | None:
    described = manifest.get("verifier")
    if described is None:
        return None
    if described.get("inputs") != list(INPUTS):
        raise ModelError(f"{directory}: its answer verifier reads other inputs; retrain it")
    return AnswerVerifier(
        described["tiers"],
        weights["verifier_mean"],
        weights["verifier_scale"],
        weights["verifier_weights"],
        weights["verifier_bias"],
        described.get("report", {}),
    )


def text_digests(texts: list[str]) -> npt.NDArray[np.uint64]:
    """64-bit digests of whitespace-normalised, case-folded texts: the identity of a prompt for
    deduplication and for keeping training prompts out of evaluations."""
    keys = (" ".join(t.split()).casefold().encode() for t in texts)
    return np.array(
        [int.from_bytes(hashlib.sha1(k).digest()[:8], "big") for k in keys], dtype=np.uint64
    )


def shipped_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("rung.classifiers") / "defaults"))


def resolve(name_or_dir: str) -> Path:
    """A classifier directory from a config value: a path, or a shipped classifier's name."""
    path = Path(name_or_dir).expanduser()
    if (path / "manifest.json").exists():
        return path
    shipped = shipped_dir() / name_or_dir
    if (shipped / "manifest.json").exists():
        return shipped
    names = sorted(p.name for p in shipped_dir().iterdir() if (p / "manifest.json").exists())
    raise ModelError(
        f"no classifier {name_or_dir!r}: not a directory with a manifest.json, and "
        f"not a shipped one ({', '.join(names) or 'none'})"
    )

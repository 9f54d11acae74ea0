"""MiniLM with int8 arithmetic: the cache's embedder, built once from the packaged MiniLM.

The packaged `all-MiniLM-L6-v2-int8.onnx` stores its weights as int8 only to be small: they are
cast back to float at load and every MatMul runs in fp32, streaming ~42 MB of weights per query.
A cache lookup embeds one short question at a time, so that is the semantic hit's cost (~4 ms
on the 2-core machine). This recipe folds the constants and re-quantizes the MatMuls dynamically
(int8 weights per output channel, activations quantized per call; onnxruntime.quantization),
which runs the same query in ~1.6 ms. Its vectors are not the teacher's (cosine ~0.99 to them),
so the verifier and its calibration are fitted on this embedder, under its own identity.

Built once per machine (`rung models fetch`, a few seconds; needs the `onnx` package), written
next to the other models with a sha256 stamp checked on every load. The identity that the cache
verifier records is the recipe plus the teacher's sha256, not the file's bytes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from rung.classifiers.embedder import OnnxEmbedder
from rung.weights.stamp import intact, seal

NAME = "minilm-l6-q8"
RECIPE = "minilm-l6-q8/1: folded constants, dynamic int8 MatMul, per-channel QInt8 weights"
TEACHER = "minilm-l6-int8"
FILENAME = "all-MiniLM-L6-v2-q8.onnx"


def identity(teacher_sha256: str) -> dict[str, str]:
    digest = hashlib.sha256(f"{RECIPE}\0{teacher_sha256}".encode()).hexdigest()
    return {"name": NAME, "sha256": digest}


def build(teacher_path: Path, path: Path, teacher_sha256: str) -> None:
    """Fold the teacher's constants, quantize its MatMuls, write `path` atomically with a stamp."""
    import logging

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    print(f"building {NAME} from {TEACHER} (once)…", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(teacher_path), options, providers=["CPUExecutionProvider"])
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for CNNs
        try:
            quantize_dynamic(folded, partial, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
    seal(partial, path, {"recipe": RECIPE, "teacher": teacher_sha256})


def open_quantized(
    teacher_path: Path,
    teacher_sha256: str,
    models_dir: Path,
    allow_build: bool = True,
    threads: int = 1,
) -> OnnxEmbedder:
    path = models_dir / FILENAME
    if not intact(path):
        if not allow_build:
            raise FileNotFoundError(
                f"embedder {NAME} is not built yet: run `rung models fetch` (builds it once)"
            )
        build(teacher_path, path, teacher_sha256)
    return OnnxEmbedder(path, threads=threads, name=NAME)


def is_built(models_dir: Path) -> bool:
    return intact(models_dir / FILENAME)

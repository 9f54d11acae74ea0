#!/usr/bin/env bash
# Install llama-cpp-python's OpenAI-compatible server into rung's virtualenv.
# The wheel is built from source once (about 5 minutes on 2 cores) and kept in a cache folder,
# so later installs on the same machine take seconds.
#   usage: scripts/install-llama.sh PIP VERSION WHEEL_CACHE
set -euo pipefail
pip=$1 version=$2 cache=$3
# A portable build: -march=native picked up AMX and AVX512-FP16 on a VM whose kernel does not
# run them, and the server died with "Illegal instruction" on its first request. x86-64-v3
# (AVX2, FMA, F16C) runs on every x86 CPU of the last decade; other architectures build native.
flags="-DLLAVA_BUILD=OFF"
flavor=native
if [ "$(uname -m)" = x86_64 ]; then
  flags="$flags -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  flavor=x86-64-v3
fi
cache="$cache/$flavor"
mkdir -p "$cache"
if ! ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version for $flavor (one-off, ~6-15 min on 2 cores; cached in $cache)"
  # LLAVA is the multimodal part rung does not use; skipping it nearly halves the build.
  CMAKE_ARGS="${CMAKE_ARGS:-$flags}" "$pip" wheel --no-cache-dir --no-deps -w "$cache" \
    "llama-cpp-python==$version"
fi
# The cached wheel replaces whatever build the venv had (e.g. a native one from before).
"$pip" install --quiet --no-index --no-deps --force-reinstall --find-links "$cache" \
  "llama-cpp-python==$version"
"$pip" install --quiet --find-links "$cache" "llama-cpp-python[server]==$version"

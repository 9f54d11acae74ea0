#!/usr/bin/env bash
# Install llama-cpp-python's OpenAI-compatible server into rung's virtualenv.
# The wheel is built from source once (about 5 minutes on 2 cores) and kept in a cache folder,
# so later installs on the same machine take seconds.
#   usage: scripts/install-llama.sh PIP VERSION WHEEL_CACHE
set -euo pipefail
pip=$1 version=$2 cache=$3
mkdir -p "$cache"
if ! ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version (one-off, ~5 min on 2 cores; cached in $cache)"
  # LLAVA is the multimodal part rung does not use; skipping it nearly halves the build.
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$pip" wheel --no-deps -w "$cache" \
    "llama-cpp-python==$version"
fi
"$pip" install --quiet --find-links "$cache" "llama-cpp-python[server]==$version"

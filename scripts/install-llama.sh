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
  echo "==> building llama.cpp's server (llama-cpp-python $version, $flavor): once per machine,"
  echo "    ~6-15 min on 2 cores, then cached in $cache"
  # LLAVA is the multimodal part rung does not use; skipping it nearly halves the build.
  # The compiler's ~400 lines go to a log; a line a minute says it is still going.
  build_log="$cache/build-$version.log"
  CMAKE_ARGS="${CMAKE_ARGS:-$flags}" "$pip" wheel --no-cache-dir --no-deps -w "$cache" \
    "llama-cpp-python==$version" >"$build_log" 2>&1 &
  builder=$!
  started=$(date +%s)
  while kill -0 "$builder" 2>/dev/null; do
    sleep 5
    elapsed=$(( $(date +%s) - started ))
    if (( elapsed % 60 < 5 && elapsed >= 60 )); then
      echo "    still compiling... $(( elapsed / 60 )) min"
    fi
  done
  if ! wait "$builder"; then
    echo "llama-cpp-python failed to build; the last lines of $build_log:" >&2
    tail -n 30 "$build_log" >&2
    exit 1
  fi
  echo "    built in $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s"
fi
# The cached wheel replaces whatever build the venv had (e.g. a native one from before).
"$pip" install --quiet --no-index --no-deps --force-reinstall --find-links "$cache" \
  "llama-cpp-python==$version"
"$pip" install --quiet --find-links "$cache" "llama-cpp-python[server]==$version"

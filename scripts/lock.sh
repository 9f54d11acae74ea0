#!/usr/bin/env bash
# Refresh constraints.txt, the pinned versions `make install` and CI install: resolve rung's
# dependencies (every extra `make install` uses) afresh in a throwaway virtualenv and pin exactly
# what was installed. Run it (`make lock`) to take newer releases on purpose, then `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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

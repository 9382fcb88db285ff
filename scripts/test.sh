#!/usr/bin/env bash
# Install what the tests need, then run them. Usage: scripts/test.sh [--fast] [pytest args...]
#   --fast   unit tests only (no model loads)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
marker=()
if [ "${1:-}" = "--fast" ]; then shift; marker=(-m "not slow"); fi
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "${marker[@]}" "$@"

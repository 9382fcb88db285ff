#!/usr/bin/env bash
# Install what the tests need, then run them. Usage: scripts/test.sh [--fast|--extended|--ray|--vllm] [pytest args...]
#   --fast   unit tests only (no model loads)
#   --vllm   build .venv-vllm (vLLM's CPU build) and run the tests marked vllm in it
#   --extended  only the minutes-long end-to-end runs the default run leaves out (CI runs both)
#   --ray    only the tests that start a local Ray cluster (CI runs them too)
set -euo pipefail
cd "$(dirname "$0")/.."
marker=()
case "${1:-}" in
  --vllm) shift; bash scripts/setup.sh --vllm; VENV="${ST_EVAL_VLLM_VENV:-.venv-vllm}"; marker=(-m vllm) ;;
  --fast) shift; bash scripts/setup.sh; VENV="${ST_EVAL_VENV:-.venv}"; marker=(-m "not slow and not extended and not ray") ;;
  --extended) shift; bash scripts/setup.sh; VENV="${ST_EVAL_VENV:-.venv}"; marker=(-m extended) ;;
  --ray) shift; bash scripts/setup.sh; VENV="${ST_EVAL_VENV:-.venv}"; marker=(-m ray) ;;
  *) bash scripts/setup.sh; VENV="${ST_EVAL_VENV:-.venv}"; marker=(-m "not extended and not ray") ;;
esac
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "${marker[@]}" "$@"

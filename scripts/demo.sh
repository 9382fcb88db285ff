#!/usr/bin/env bash
# The main job on the embedded judge: judge example pairs in both orders on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
mkdir -p runs
"$VENV/bin/st-eval" judge examples/pairs.jsonl --order both --output runs/demo-judgments.jsonl "$@"
echo "judgments written to runs/demo-judgments.jsonl"

#!/usr/bin/env bash
# The main job on the embedded judge: judge the example pairs in both orders on CPU and write
# JSONL judgments (verdicts, rationales, votes, position consistency, accuracy against labels).
# Rerunning resumes from runs/demo-judgments.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
"$VENV/bin/st-eval" judge examples/pairs.jsonl --order both --output runs/demo-judgments.jsonl "$@"
echo "judgments: runs/demo-judgments.jsonl"

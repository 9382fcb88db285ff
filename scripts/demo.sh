#!/usr/bin/env bash
# The main job on the embedded judge: the self-taught loop (recipe smollm2-cpu) end to end on
# CPU — instruction selection, synthetic pairs, rejection-sampled judgments, LoRA fine-tuning,
# evaluation — ending with the before/after table and the trained judge's folder and card.
# Rerunning resumes: finished stages are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
exec "$VENV/bin/st-eval" train --recipe training/recipes/smollm2-cpu.yaml --run-dir runs/smollm2-cpu --resume "$@"

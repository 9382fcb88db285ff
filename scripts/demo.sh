#!/usr/bin/env bash
# The main job on the embedded judge: the self-taught loop (recipe smollm2-cpu) end to end on
# CPU. It selects instructions, synthesizes contrasting pairs, annotates them by rejection
# sampling in both orders, fine-tunes the judge (LoRA), evaluates it before and after, and ends
# with the before/after table, the trained judge's folder and its card. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
"$VENV/bin/st-eval" train --recipe training/recipes/smollm2-cpu.yaml --run-dir runs/smollm2-cpu --resume "$@"

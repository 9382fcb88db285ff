#!/usr/bin/env bash
# The main job on the embedded judge: the self-taught loop (recipe smollm2-cpu) end to end on
# CPU. It builds label-free contrasting pairs (each request's own answer against a worse one made
# from it: another request's answer, a damaged copy, a swapped key term, assistant framing),
# trains the judge to rate the right answer higher (LoRA),
# evaluates it before and after, and ends with the before/after table (gains with intervals),
# the trained judge's folder and its card. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
"$VENV/bin/st-eval" train --recipe training/recipes/smollm2-cpu.yaml --run-dir runs/smollm2-cpu --resume "$@"

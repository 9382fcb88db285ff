"""The dtype a judge computes in: bfloat16 where the device computes it natively, float32 elsewhere.

Why per machine: a CPU with AVX512-BF16 or AMX multiplies bfloat16 matrices faster than float32
(measured on a 2-core Xeon with AMX: 362 against 130 GFLOP/s), while a CPU without them
emulates bfloat16 far slower than float32 (an AVX2-only EPYC: 1.2 against 56 GFLOP/s on one
thread). So ``dtype: auto`` (engines, training) is decided from the CPU's instruction-set flags
as Linux reports them; where they cannot be read, or on a CPU of another architecture, it is
float32. CUDA devices compute in bfloat16.

A judge with a LoRA merged into its weights (every trained st-eval judge, the shipped one) is
the exception on CPU: the merged update is mostly smaller than half a bfloat16 step of the weight
it is added to, so rounding the merged weights to bfloat16 drops it (measured on the full recipe's
judge: log-odds 2.13 as trained, 3.02 merged in bfloat16). Such folders are written in float32
with :data:`COMPUTE_DTYPE_KEY` in their ``config.json``, and ``auto`` keeps them in float32 on a
CPU (on CUDA ``auto`` stays bfloat16, what GPU judges are served in).
"""

from __future__ import annotations

import functools
import json
import platform
from collections.abc import Collection
from pathlib import Path
from typing import Any

from st_eval.errors import EngineError

#: what ``dtype`` accepts (engines' ``--engine-arg dtype=...``, the recipe's ``train.dtype``)
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: instruction-set flags that set a judge's speed on x86 (Linux names -> names in reports), in report order
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}
#: flags of units that multiply bfloat16 matrices natively
_NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
#: the ``config.json`` key of a folder that must compute in a given dtype under ``auto`` on CPU
COMPUTE_DTYPE_KEY = "st_eval_compute_dtype"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's flags as ``/proc/cpuinfo`` names them; empty where that file is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_bfloat16(flags: Collection[str] | None = None) -> bool:
    """Whether the CPU (``flags``, default this one's) multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool(_NATIVE_BF16 & set(cpu_flags() if flags is None else flags))


def cpu_kind(flags: Collection[str] | None = None) -> str:
    """A short name for the CPU's fastest relevant unit, used to name benchmark tables:
    ``amx``, ``avx512-bf16``, ``avx512``, ``avx2``, or the architecture (``aarch64``, ...)."""
    present = set(cpu_flags() if flags is None else flags)
    for flag, kind in (("amx_bf16", "amx"), ("avx512_bf16", "avx512-bf16"), ("avx512f", "avx512"), ("avx2", "avx2")):
        if flag in present:
            return kind
    return platform.machine().lower() or "cpu"


def isa_names(flags: Collection[str] | None = None) -> list[str]:
    """The :data:`ISA_FLAGS` the CPU has, by their report names (``["AVX2"]`` on an AVX2-only CPU)."""
    present = set(cpu_flags() if flags is None else flags)
    return [name for flag, name in ISA_FLAGS.items() if flag in present]


def folder_dtype(path: str | Path) -> str | None:
    """The dtype a model folder asks to compute in (:data:`COMPUTE_DTYPE_KEY`), if any."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get(COMPUTE_DTYPE_KEY) if isinstance(config, dict) else None
    return value if value in DTYPES and value != "auto" else None


def default_device() -> str:
    """Where a model computes when no device is named: ``cuda`` where torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(requested: str, device: str, flags: Collection[str] | None = None, pinned: str | None = None) -> str:
    """The dtype to compute in on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ...): ``requested``
    unless it is ``auto``; ``auto`` is bfloat16 on CUDA, ``pinned`` (a folder's
    :func:`folder_dtype`) on a CPU where given, else bfloat16 on a CPU with native bfloat16
    (``flags``, default this CPU's) and float32 elsewhere."""
    if requested not in DTYPES:
        raise EngineError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bfloat16"
    if pinned is not None:
        return pinned
    return "bfloat16" if device == "cpu" and native_bfloat16(flags) else "float32"


def write_merged(base: str | Path, adapter: str | Path, folder: str | Path) -> Any:
    """Merge a LoRA ``adapter`` into ``base`` in float32 and save the result to ``folder``, marked
    to stay float32 on CPU (:data:`COMPUTE_DTYPE_KEY`); return the merged model. float32 because
    the update is mostly below bfloat16's resolution (this module's docstring)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).merge_and_unload()
    return save_float32(merged, folder)


def save_float32(model: Any, folder: str | Path) -> Any:
    """Save a float32 ``model`` to ``folder`` marked to stay float32 on CPU
    (:data:`COMPUTE_DTYPE_KEY`), as a trained judge is (a merged LoRA, a fully fine-tuned rating
    judge); return it."""
    setattr(model.config, COMPUTE_DTYPE_KEY, "float32")
    model.save_pretrained(folder)
    return model


__all__ = ["COMPUTE_DTYPE_KEY", "DTYPES", "ISA_FLAGS", "cpu_flags", "cpu_kind", "default_device", "folder_dtype", "isa_names", "native_bfloat16", "resolve_dtype", "save_float32", "write_merged"]

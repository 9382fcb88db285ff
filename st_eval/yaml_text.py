"""YAML as st-eval's files mean it: ``1e-4`` is a number.

PyYAML follows YAML 1.1, whose floats need a dot, so ``learning_rate: 1e-4`` arrives as the
string ``'1e-4'`` (YAML 1.2 and JSON read it as a float, and ``json.dumps`` writes small floats
that way: a run's ``recipe.json`` holds ``5e-06``). Every YAML file st-eval reads (recipes and a
run's recipe.json, judge templates, accelerate configs) goes through :func:`load_yaml`, whose
loader also reads exponent numbers without a dot as floats.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus YAML 1.2's floats in exponent notation without a dot."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, with ``1e-4`` read as a float; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


__all__ = ["load_yaml"]

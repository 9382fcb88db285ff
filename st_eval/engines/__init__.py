"""Engine registry: ``make_engine("hf" | "vllm" | "openai" | "module:Class", model, **options)``.

Engine modules are imported lazily so that ``vllm`` or a server client is only needed when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig, cut_at_stop
from st_eval.errors import EngineError

ENGINES: dict[str, str] = {
    "hf": "st_eval.engines.hf:HFEngine",
    "vllm": "st_eval.engines.vllm:VLLMEngine",
    "openai": "st_eval.engines.openai:OpenAIEngine",
}


def make_engine(name: str, model: str | None = None, **options: Any) -> Engine:
    """Create an engine by name, or from ``module:Class`` (an engine of your own, which cluster
    replicas build the same way); unknown names and bad options raise EngineError."""
    if name not in ENGINES and ":" not in name:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}, or module:Class")
    module_name, class_name = ENGINES.get(name, name).split(":")
    try:
        engine_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"engine {name!r}: cannot import it ({exc})") from exc
    try:
        return engine_class(model, **options)
    except TypeError as exc:
        raise EngineError(f"engine {name!r}: bad option: {exc}") from exc


__all__ = ["ENGINES", "ChatPrompt", "Engine", "SamplingConfig", "cut_at_stop", "make_engine"]

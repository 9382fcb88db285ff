"""Engine registry: ``make_engine("hf" | "vllm" | "openai", model, **options)``.

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
    """Create an engine by name; unknown names and bad options raise EngineError."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    module_name, class_name = ENGINES[name].split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    try:
        return engine_class(model, **options)
    except TypeError as exc:
        raise EngineError(f"engine {name!r}: bad option: {exc}") from exc


__all__ = ["ENGINES", "ChatPrompt", "Engine", "SamplingConfig", "cut_at_stop", "make_engine"]

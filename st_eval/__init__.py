"""st-eval: self-taught LLM judges, trained without human labels, usable in common eval frameworks."""

from st_eval.engines import Engine, SamplingConfig, make_engine
from st_eval.judge import Judge, JudgeConfig, build_prompt, order_result
from st_eval.records import Judgment, Message, OrderResult, Pair
from st_eval.verdict import ParsedVerdict, parse_verdict

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "Judge",
    "JudgeConfig",
    "Judgment",
    "Message",
    "OrderResult",
    "Pair",
    "ParsedVerdict",
    "SamplingConfig",
    "build_prompt",
    "make_engine",
    "order_result",
    "parse_verdict",
]

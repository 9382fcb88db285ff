"""The st-eval judge run through an inspect-ai model (the evaluated one or the ``grader`` role).

This is glue only: prompts come from the core ``build_prompt``, verdicts from ``order_result``
and ``combine_orders``; here we just send the prompts to an inspect-ai ``Model`` (which is async,
so the core ``Judge`` with its synchronous engine cannot drive it) and convert messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    GenerateConfig,
    Model,
)
from inspect_ai.util import collect

from st_eval.engines import ChatPrompt, SamplingConfig
from st_eval.judge import ORDER_MODES, JudgeConfig, build_prompt, order_result
from st_eval.records import Message, Order, OrderResult, Pair
from st_eval.voting import combine_orders

_MESSAGE_TYPES = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}


def to_inspect_messages(prompt: ChatPrompt) -> list[ChatMessage]:
    """Core chat messages as inspect-ai messages."""
    return [_MESSAGE_TYPES[m["role"]](content=m["content"]) for m in prompt]


def to_core_messages(messages: str | list[ChatMessage]) -> list[Message]:
    """A sample's input as the conversation of a Pair (tool turns carry no answer text: dropped)."""
    if isinstance(messages, str):
        return [Message("user", messages)]
    return [Message(m.role, m.text) for m in messages if m.role in _MESSAGE_TYPES]


def generate_config(sampling: SamplingConfig, **overrides: Any) -> GenerateConfig:
    """inspect-ai decoding settings that reproduce a core SamplingConfig."""
    fields: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return GenerateConfig(**fields)


async def sample_judge(
    model: Model,
    pair: Pair,
    config: JudgeConfig,
    generate: GenerateConfig | None = None,
    orders: Sequence[Order] | None = None,
) -> dict[str, list[str]]:
    """Raw judge outputs per presentation order: ``config.samples`` of them for each order.

    ``orders`` defaults to ``config.order``. All calls run concurrently so a batching provider
    (``st_judge``) sees them together. Samples are separate calls rather than ``num_choices``
    because not every provider honours it.
    """
    orders = tuple(orders or ORDER_MODES[config.order])
    calls = [
        model.generate(
            to_inspect_messages(build_prompt(pair, order, config.template, config.allow_tie)),
            config=generate or GenerateConfig(),
        )
        for order in orders
        for _ in range(config.samples)
    ]
    outputs = await collect(*calls)
    texts = [o.completion for o in outputs]
    return {order: texts[i * config.samples : (i + 1) * config.samples] for i, order in enumerate(orders)}


def decide(outputs: dict[str, list[str]], allow_tie: bool = False) -> tuple[list[OrderResult], Any, bool | None]:
    """Per-order results and the combined (verdict, consistent) for raw outputs, via the core."""
    results = [order_result(order, texts, allow_tie) for order, texts in outputs.items()]  # type: ignore[arg-type]
    verdict, _, consistent = combine_orders(results)
    return results, verdict, consistent

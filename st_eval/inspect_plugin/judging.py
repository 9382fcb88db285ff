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

import json

from st_eval.engines import ChatPrompt, SamplingConfig
from st_eval.judge import ORDER_MODES, JudgeConfig, build_prompt, order_result, probability_order_result, score_order_result
from st_eval.prompt import DEFAULT_TEMPLATE, judge_template, load_template
from st_eval.rating import TOP_LOGPROBS
from st_eval.records import Message, Order, OrderResult, Pair
from st_eval.scores import written_rating
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
    template = load_template(config.template)
    if template.reads_probabilities:
        return await _read(model, pair, config.template, orders)
    if template.is_score:
        return await _score(model, pair, config, generate, orders)
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


async def _read(model: Model, pair: Pair, template: str, orders: Sequence[Order]) -> dict[str, list[str]]:
    """A rating or choice judge's raw outputs: the model's top next-token log-probabilities for
    the template's two prompts (one-token requests: each answer alone, or the pair in both
    orders), shown per order as the core's ``raw`` (this order's first)."""
    loaded = load_template(template)
    config = GenerateConfig(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
    outputs = await collect(*(model.generate(to_inspect_messages(prompt), config=config) for prompt in loaded.probability_prompts(pair)))
    tops = []
    for output in outputs:
        content = output.choices[0].logprobs.content if output.choices and output.choices[0].logprobs else None
        top = {t.token: t.logprob for t in (content[0].top_logprobs or [])} if content else {}
        tops.append(json.dumps(top, ensure_ascii=False))
    return {order: (tops if order == "given" else tops[::-1]) for order in orders}


async def _score(
    model: Model, pair: Pair, config: JudgeConfig, generate: GenerateConfig | None, orders: Sequence[Order]
) -> dict[str, list[str]]:
    """A written-rating judge's raw outputs: ``config.samples`` ratings of each answer, shown per
    order as the core's ``raw`` (the samples of the answer shown first, then of the other)."""
    loaded = load_template(config.template)
    calls = [
        model.generate(to_inspect_messages(loaded.render_rating(pair, side)), config=generate or GenerateConfig())
        for side in ("A", "B")
        for _ in range(config.samples)
    ]
    texts = [o.completion for o in await collect(*calls)]
    return {order: (texts if order == "given" else texts[config.samples :] + texts[: config.samples]) for order in orders}


def template_for(model: Model, template: str | None) -> str:
    """The template asked for, else an ``st_judge`` model's own (its judge card's), else the default."""
    if template:
        return template
    name = str(model)
    if name.startswith("st_judge/"):
        return judge_template(name.removeprefix("st_judge/"))
    return DEFAULT_TEMPLATE


def decide(outputs: dict[str, list[str]], allow_tie: bool = False, template: str | None = None) -> tuple[list[OrderResult], Any, bool | None]:
    """Per-order results and the combined (verdict, consistent) for raw outputs, via the core."""
    if template and load_template(template).reads_probabilities:
        results = []
        for order, raw in outputs.items():
            first, second = (json.loads(text) for text in raw)
            top_first, top_second = (first, second) if order == "given" else (second, first)
            results.append(probability_order_result(order, top_first, top_second, template))  # type: ignore[arg-type]
        verdict, _, consistent = combine_orders(results)
        return results, verdict, consistent
    if template and load_template(template).is_score:
        loaded = load_template(template)
        results = []
        for order, raw in outputs.items():
            half = len(raw) // 2
            first, second = written_rating(raw[:half], loaded), written_rating(raw[half:], loaded)
            rating_a, rating_b = (first, second) if order == "given" else (second, first)
            results.append(score_order_result(order, rating_a, rating_b, template))  # type: ignore[arg-type]
        verdict, _, consistent = combine_orders(results)
        return results, verdict, consistent
    results = [order_result(order, texts, allow_tie, template=template or DEFAULT_TEMPLATE) for order, texts in outputs.items()]  # type: ignore[arg-type]
    verdict, _, consistent = combine_orders(results)
    return results, verdict, consistent

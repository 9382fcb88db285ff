"""The judge: prompt building, order swapping, sampling, parsing, voting and rating in one place.

Every door (CLI, lm-eval, Inspect, gate, training) calls these functions; none re-implements
how a judgment is made. The template decides the verdict form: a pairwise template shows both
answers and parses a written ``[[A]]``/``[[B]]``; a rating template rates each answer alone from
the judge's next-token probabilities (``rating.py``) and the higher rating wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tqdm.auto import tqdm

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.prompt import DEFAULT_TEMPLATE, load_template
from st_eval.rating import TOP_LOGPROBS, rating_from_logprobs, verdict_from_ratings
from st_eval.records import Judgment, Order, OrderResult, Pair, Verdict
from st_eval.verdict import parse_verdict
from st_eval.verdict_step import sample_judgments
from st_eval.voting import combine_orders, majority, tally

OrderMode = Literal["given", "swapped", "both"]
ORDER_MODES: dict[str, tuple[Order, ...]] = {
    "given": ("given",),
    "swapped": ("swapped",),
    "both": ("given", "swapped"),
}
#: decoding used when several samples are drawn and the caller did not choose (the paper's).
SAMPLING_FOR_VOTES = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=512)
_SWAP = {"A": "B", "B": "A"}


@dataclass
class JudgeConfig:
    """How judgments are made.

    template: built-in template name or path of a template YAML file.
    samples: judgments sampled per pair and order; the verdict is their majority.
    order: ``given`` (A then B), ``swapped`` (B shown as A) or ``both`` (position-consistency).
    allow_tie: let the judge answer ``[[C]]`` for a tie.
    sampling: decoding settings; default greedy for one sample, temperature 0.7 / top_p 0.9
        for several.
    verdict_step: finish a sample that ends without a parseable verdict by continuing it from
        "Final verdict: [[" so the judge writes only the letter (see ``verdict_step.py``); such
        samples are counted as forced. For small judges that reason but rarely conclude.
    """

    template: str = DEFAULT_TEMPLATE
    samples: int = 1
    order: OrderMode = "given"
    allow_tie: bool = False
    sampling: SamplingConfig | None = None
    verdict_step: bool = False

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise InputError(f"samples must be >= 1, got {self.samples}")
        if self.order not in ORDER_MODES:
            raise InputError(f"order must be one of {', '.join(ORDER_MODES)}, got {self.order!r}")
        if self.sampling is None:
            self.sampling = SamplingConfig() if self.samples == 1 else SAMPLING_FOR_VOTES


def build_prompt(
    pair: Pair, order: Order = "given", template: str = DEFAULT_TEMPLATE, allow_tie: bool = False
) -> ChatPrompt:
    """Chat messages asking the judge about ``pair`` in the given presentation order."""
    loaded = load_template(template)
    if loaded.is_rating:
        raise InputError(f"template {loaded.name!r} rates one answer at a time: it has no pairwise prompt (use Judge, which rates each answer)")
    shown = pair if order == "given" else pair.swapped()
    return loaded.render(shown, allow_tie=allow_tie)


def unswap(verdict: Verdict | None, order: Order) -> Verdict | None:
    """Map a verdict about the shown order back to the pair's own labels."""
    if order == "swapped" and verdict in _SWAP:
        return _SWAP[verdict]  # type: ignore[return-value]
    return verdict


def order_result(order: Order, outputs: Sequence[str], allow_tie: bool = False, forced: int = 0) -> OrderResult:
    """Parse and vote the samples drawn for one order (``forced``: how many the verdict step finished)."""
    parsed = [parse_verdict(text, allow_tie=allow_tie) for text in outputs]
    shown_votes = tally(parsed)
    votes = {(_SWAP.get(k, k) if order == "swapped" else k): v for k, v in shown_votes.items()}
    verdict, confidence = majority(votes)
    winner_sample = next(
        (text for text, p in zip(outputs, parsed) if p.valid and unswap(p.verdict, order) == verdict),
        outputs[0] if outputs else "",
    )
    return OrderResult(
        order=order,
        verdict=verdict,
        votes=votes,
        confidence=confidence,
        rationale=winner_sample,
        raw=list(outputs),
        forced=forced,
    )


def rating_order_result(order: Order, top_a: dict[str, float], top_b: dict[str, float], template: str) -> OrderResult:
    """One order's result of a rating judge, from each answer's top next-token log-probabilities
    (``top_a`` for the pair's response A). ``raw`` holds them as JSON in the order shown."""
    choices = load_template(template).choices
    rating_a, rating_b = rating_from_logprobs(top_a, choices), rating_from_logprobs(top_b, choices)
    verdict = verdict_from_ratings(rating_a, rating_b)
    shown = (top_a, top_b) if order == "given" else (top_b, top_a)
    return OrderResult(
        order=order,
        verdict=verdict,
        votes={verdict: 1} if verdict else {"invalid": 1},
        confidence=abs(rating_a - rating_b) if verdict else 0.0,  # type: ignore[operator]
        rationale=f"rating of A: {_rating_text(rating_a)}, rating of B: {_rating_text(rating_b)} ({load_template(template).name})",
        raw=[json.dumps(top, ensure_ascii=False) for top in shown],
    )


class Judge:
    """A judge bound to an engine and a configuration (pairwise or rating, as its template says)."""

    def __init__(self, engine: Engine, config: JudgeConfig | None = None) -> None:
        self.engine = engine
        self.config = config or JudgeConfig()
        self.template = load_template(self.config.template)
        if self.template.is_rating:
            for name, value, default in (("samples", self.config.samples, 1), ("verdict_step", self.config.verdict_step, False), ("allow_tie", self.config.allow_tie, False)):
                if value != default:
                    raise InputError(
                        f"{name} does not apply to the rating template {self.template.name!r}: it reads the judge's "
                        "probabilities of each verdict token instead of sampling judgments"
                    )

    @property
    def orders(self) -> tuple[Order, ...]:
        return ORDER_MODES[self.config.order]

    def prompts(self, pair: Pair) -> list[tuple[Order, ChatPrompt]]:
        return [
            (order, build_prompt(pair, order, self.config.template, self.config.allow_tie))
            for order in self.orders
        ]

    def judge(self, pairs: Sequence[Pair], *, progress: bool = False, chunk_size: int = 16) -> list[Judgment]:
        """Judge all pairs and return one judgment per pair, in input order."""
        return list(self.iter_judgments(pairs, progress=progress, chunk_size=chunk_size))

    def iter_judgments(
        self, pairs: Iterable[Pair], *, progress: bool = False, chunk_size: int = 16, total: int | None = None
    ) -> Iterator[Judgment]:
        """Judge pairs chunk by chunk, yielding judgments as soon as each chunk is done.

        Chunking lets callers write results incrementally so a long run never loses finished work.
        """
        items = list(pairs)
        bar = tqdm(total=total or len(items), desc="judging", unit="pair", disable=not progress)
        try:
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                for judgment in self._judge_chunk(chunk):
                    bar.update(1)
                    yield judgment
        finally:
            bar.close()

    def _judge_chunk(self, pairs: Sequence[Pair]) -> list[Judgment]:
        if self.template.is_rating:
            return self._rate_chunk(pairs)
        requests = [(i, order, prompt) for i, pair in enumerate(pairs) for order, prompt in self.prompts(pair)]
        outputs, forced = sample_judgments(
            self.engine,
            [r[2] for r in requests],
            self.config.samples,
            self.config.sampling,  # type: ignore[arg-type]
            verdict_step=self.config.verdict_step,
            allow_tie=self.config.allow_tie,
        )
        per_pair: list[list[OrderResult]] = [[] for _ in pairs]
        for (i, order, _), samples, flags in zip(requests, outputs, forced):
            per_pair[i].append(order_result(order, samples, self.config.allow_tie, forced=sum(flags)))
        return [self._judgment(pair, results) for pair, results in zip(pairs, per_pair)]

    def _rate_chunk(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Rate both answers of every pair alone; the higher rating wins, in every order asked for.

        The answers are never shown together, so the orders share one pair of ratings: each
        requested order gets the same verdict, and position consistency holds by construction.
        """
        prompts = [self.template.render_rating(pair, side) for pair in pairs for side in ("A", "B")]
        tops = self.engine.next_token_logprobs(prompts, TOP_LOGPROBS)
        judgments = []
        for i, pair in enumerate(pairs):
            top_a, top_b = tops[2 * i], tops[2 * i + 1]
            results = [rating_order_result(order, top_a, top_b, self.config.template) for order in self.orders]
            judgment = self._judgment(pair, results, sampling={"top_logprobs": TOP_LOGPROBS, "samples": 1})
            judgment.ratings = {"A": rating_from_logprobs(top_a, self.template.choices), "B": rating_from_logprobs(top_b, self.template.choices)}
            judgment.shortened = self.template.shortens(pair)
            judgments.append(judgment)
        return judgments

    def _judgment(self, pair: Pair, results: list[OrderResult], sampling: dict | None = None) -> Judgment:
        verdict, confidence, consistent = combine_orders(results)
        rationale = next((r.rationale for r in results if r.verdict == verdict), results[0].rationale)
        return Judgment(
            pair_id=pair.id,
            verdict=verdict,
            confidence=confidence,
            rationale=rationale,
            orders=results,
            consistent=consistent,
            engine=self.engine.name,
            model=self.engine.model,
            template=self.template.name,
            sampling=sampling
            or {
                **self.config.sampling.to_dict(),  # type: ignore[union-attr]
                "samples": self.config.samples,
                "verdict_step": self.config.verdict_step,
            },
            label=pair.label,
            metadata=pair.metadata,
        )

    def with_config(self, **changes) -> Judge:
        """The same engine with some configuration fields changed."""
        return Judge(self.engine, replace(self.config, **changes))


def _rating_text(rating: float | None) -> str:
    return "invalid" if rating is None else f"{rating:.4f}"

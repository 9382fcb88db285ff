"""The judge: prompt building, order swapping, sampling, parsing, voting and rating in one place.

Every door (CLI, lm-eval, Inspect, gate, training) calls these functions; none re-implements
how a judgment is made. The template decides the verdict form: a pairwise template shows both
answers and parses a written ``[[A]]``/``[[B]]``; a rating template rates each answer alone from
the judge's next-token probabilities (``rating.py``), a choice template reads the same
probabilities of ``A``/``B`` with both answers shown, in both orders, a score template from a written rating
(``scores.py``, several samples averaged), and the higher rating wins. k-way templates (one of
k answers) are judged by ``kway.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from st_eval.context_fit import check_policy, fit_pairs
from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.errors import InputError
from st_eval.progress import ChunkProgress, item_bar
from st_eval.prompt import DEFAULT_TEMPLATE, JudgeTemplate, judge_template, load_template
from st_eval.rating import TOP_LOGPROBS, choice_ratings, rating_from_logprobs, verdict_from_ratings
from st_eval.records import Judgment, Order, OrderResult, Pair, Verdict
from st_eval.scores import WrittenRating, rate
from st_eval.verdict_step import sample_judgments
from st_eval.voting import combine_orders, majority, tally

log = logging.getLogger(__name__)
OrderMode = Literal["given", "swapped", "both"]
ORDER_MODES: dict[str, tuple[Order, ...]] = {
    "given": ("given",),
    "swapped": ("swapped",),
    "both": ("given", "swapped"),
}
#: decoding used when several samples are drawn and the caller did not choose (the paper's).
SAMPLING_FOR_VOTES = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=512)
_SWAP = {"A": "B", "B": "A"}
#: room left for the verdict step's continuation ("Final verdict: [[" and a letter)
VERDICT_STEP_TOKENS = 16
#: pairs judged per engine call unless the caller or the engine (``Engine.call_size``) says otherwise
CHUNK_PAIRS = 16


@dataclass
class JudgeConfig:
    """How judgments are made.

    template: built-in template name or path of a template YAML file; None: the judge's own
        (``prompt.judge_template`` of the engine's model: its judge card's, an embedded judge's).
    samples: judgments sampled per pair and order; the verdict is their majority.
    order: ``given`` (A then B), ``swapped`` (B shown as A) or ``both`` (position-consistency).
    allow_tie: let the judge answer ``[[C]]`` for a tie.
    sampling: decoding settings; default greedy for one sample, temperature 0.7 / top_p 0.9
        for several.
    verdict_step: finish a sample that ends without a parseable verdict by continuing it from
        "Final verdict: [[" so the judge writes only the letter (see ``verdict_step.py``); such
        samples are counted as forced. For small judges that reason but rarely conclude.
    too_long: a pair whose prompt does not fit the judge's context window is ``shorten``-ed
        (answers cut from the middle, marked; the judgment counts as shortened) or ``skip``-ped
        (an invalid judgment that says why); see ``context_fit.py``.
    """

    template: str | None = None
    samples: int = 1
    order: OrderMode = "given"
    allow_tie: bool = False
    sampling: SamplingConfig | None = None
    verdict_step: bool = False
    too_long: str = "shorten"

    def __post_init__(self) -> None:
        check_policy(self.too_long)
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
    if loaded.one_answer:
        raise InputError(f"template {loaded.name!r} rates one answer at a time: it has no pairwise prompt (use Judge, which rates each answer)")
    if loaded.is_kway:
        raise InputError(f"template {loaded.name!r} shows {len(loaded.verdict.letters)} answers at once: it judges k-way items, not pairs")
    shown = pair if order == "given" else pair.swapped()
    return loaded.render(shown, allow_tie=allow_tie)


def unswap(verdict: Verdict | None, order: Order) -> Verdict | None:
    """Map a verdict about the shown order back to the pair's own labels."""
    if order == "swapped" and verdict in _SWAP:
        return _SWAP[verdict]  # type: ignore[return-value]
    return verdict


def order_result(
    order: Order, outputs: Sequence[str], allow_tie: bool = False, forced: int = 0, template: str = DEFAULT_TEMPLATE
) -> OrderResult:
    """Parse and vote the samples drawn for one order (``forced``: how many the verdict step
    finished), under the verdict form ``template`` declares."""
    form = load_template(template).verdict
    parsed = [form.parse(text, allow_tie=allow_tie) for text in outputs]
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


def probability_ratings(template: JudgeTemplate, top_first: dict[str, float], top_second: dict[str, float]) -> tuple[float | None, float | None]:
    """The ratings of the pair's answers A and B read from the template's two prompts' top tokens."""
    if template.is_choice:
        return choice_ratings(top_first, top_second, template.choices)
    return rating_from_logprobs(top_first, template.choices), rating_from_logprobs(top_second, template.choices)


def probability_order_result(order: Order, top_first: dict[str, float], top_second: dict[str, float], template: str) -> OrderResult:
    """One order's result of a judge that reads probabilities, from the top next-token
    log-probabilities of the template's two prompts (``JudgeTemplate.probability_prompts``: a
    rating template's answers A and B, a choice template's pair as given and swapped). Both
    readings decide together, so every order gets the same verdict. ``raw`` holds them as JSON,
    this order's first (the answer shown first, or this order's prompt)."""
    loaded = load_template(template)
    rating_a, rating_b = probability_ratings(loaded, top_first, top_second)
    read = (
        f"P(A wins) averaged over both orders: {_rating_text(rating_a)}" if loaded.is_choice
        else f"rating of A: {_rating_text(rating_a)}, rating of B: {_rating_text(rating_b)}"
    )
    verdict = verdict_from_ratings(rating_a, rating_b)
    tops = (top_first, top_second) if order == "given" else (top_second, top_first)
    return OrderResult(
        order=order,
        verdict=verdict,
        votes={verdict: 1} if verdict else {"invalid": 1},
        confidence=abs(rating_a - rating_b) if verdict else 0.0,  # type: ignore[operator]
        rationale=f"{read} ({loaded.name})",
        raw=[json.dumps(top, ensure_ascii=False) for top in tops],
    )


class Judge:
    """A judge bound to an engine and a configuration (pairwise, rating, choice or score, as its
    template says)."""

    def __init__(self, engine: Engine, config: JudgeConfig | None = None) -> None:
        self.engine = engine
        self.config = config or JudgeConfig()
        if self.config.template is None:
            self.config = replace(self.config, template=judge_template(engine.model))
        self.template = load_template(self.config.template)
        if self.template.is_kway:
            raise InputError(f"template {self.template.name!r} is a k-way template: a pair judge needs a pairwise, rating or score template")
        if self.template.is_score:
            for name, value, default in (("verdict_step", self.config.verdict_step, False), ("allow_tie", self.config.allow_tie, False)):
                if value != default:
                    raise InputError(f"{name} does not apply to the score template {self.template.name!r}: it compares written ratings (equal ratings tie)")
        if self.template.reads_probabilities:
            for name, value, default in (("samples", self.config.samples, 1), ("verdict_step", self.config.verdict_step, False), ("allow_tie", self.config.allow_tie, False)):
                if value != default:
                    raise InputError(
                        f"{name} does not apply to the {self.template.kind} template {self.template.name!r}: it reads the judge's "
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

    def judge(self, pairs: Sequence[Pair], *, progress: bool = False, chunk_size: int | None = None) -> list[Judgment]:
        """Judge all pairs and return one judgment per pair, in input order."""
        return list(self.iter_judgments(pairs, progress=progress, chunk_size=chunk_size))

    @property
    def chunk_pairs(self) -> int:
        """Pairs per chunk when the caller does not say: 16, or enough to fill the engine's
        ``call_size`` (a cluster engine runs one job per call and wants whole waves of work)."""
        wanted = self.engine.call_size
        per_pair = 2 if self.template.one_answer or self.template.reads_probabilities else len(self.orders)
        return max(CHUNK_PAIRS, -(-wanted // per_pair)) if wanted else CHUNK_PAIRS

    def iter_judgments(
        self, pairs: Iterable[Pair], *, progress: bool = False, chunk_size: int | None = None, total: int | None = None, bar: Any = None
    ) -> Iterator[Judgment]:
        """Judge pairs chunk by chunk (``chunk_size`` pairs, default :attr:`chunk_pairs`),
        yielding judgments as soon as each chunk is done.

        Chunking lets callers write results incrementally so a long run never loses finished work.
        The progress bar (``progress``, or the caller's ``bar``) moves as the engine finishes
        samples within a chunk (``progress.ChunkProgress``), not only when the chunk ends.
        """
        items = list(pairs)
        chunk_size = chunk_size or self.chunk_pairs
        own = bar is None
        if own:
            bar = item_bar(total or len(items), "judging", "pair", disable=not progress)
        tracker = ChunkProgress(bar)
        try:
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                with tracker.chunk(len(chunk)):
                    judged = self._judge_chunk(chunk)
                for index, judgment in enumerate(judged):
                    tracker.finish_item(index)
                    yield judgment
        finally:
            if own:
                bar.close()

    def _judge_chunk(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Judge the pairs that fit the context window (shortened if needed); skipped pairs get
        an invalid judgment that says why."""
        new_tokens = 1 if self.template.reads_probabilities else self.config.sampling.max_new_tokens + (VERDICT_STEP_TOKENS if self.config.verdict_step else 0)  # type: ignore[union-attr]
        fitted = fit_pairs(pairs, self._all_prompts, self.engine, new_tokens, self.config.too_long)
        shortened, skipped = sum(f.shortened for f in fitted), sum(f.skipped is not None for f in fitted)
        if shortened or skipped:
            log.warning(
                "%d of %d pairs do not fit the judge's context window of %s tokens with %d to generate: %d shortened, %d skipped (--too-long)",
                shortened + skipped, len(pairs), self.engine.context_window, new_tokens, shortened, skipped,
            )
        judged = iter(self._judge_fitting([f.pair for f in fitted if f.skipped is None]))
        judgments = []
        for pair, fit in zip(pairs, fitted):
            if fit.skipped is not None:
                judgments.append(self._skipped(pair, fit.skipped))
                continue
            judgment = next(judged)
            judgment.shortened = judgment.shortened or fit.shortened
            judgments.append(judgment)
        return judgments

    def _all_prompts(self, pair: Pair) -> list[ChatPrompt]:
        """Every prompt judging ``pair`` sends (one per order, or one per answer)."""
        if self.template.reads_probabilities:
            return list(self.template.probability_prompts(pair))
        if self.template.one_answer:
            return [self.template.render_rating(pair, side) for side in ("A", "B")]
        return [prompt for _, prompt in self.prompts(pair)]

    def _skipped(self, pair: Pair, reason: str) -> Judgment:
        results = [OrderResult(order=order, verdict=None, votes={"invalid": 1}, confidence=0.0, rationale=f"not judged: {reason}", raw=[]) for order in self.orders]
        return self._judgment(pair, results)

    def _judge_fitting(self, pairs: Sequence[Pair]) -> list[Judgment]:
        if not pairs:
            return []
        if self.template.reads_probabilities:
            return self._read_chunk(pairs)
        if self.template.is_score:
            return self._score_chunk(pairs)
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
            per_pair[i].append(order_result(order, samples, self.config.allow_tie, forced=sum(flags), template=self.config.template))
        return [self._judgment(pair, results) for pair, results in zip(pairs, per_pair)]

    def _read_chunk(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Read the verdict of every pair from the judge's next-token probabilities: a rating
        template's answers rated alone (the higher rating wins), a choice template's pair shown in
        both orders (the mean log-odds decides), whichever orders were asked for.

        Both readings decide together, so every requested order gets the same verdict, and
        position consistency holds by construction.
        """
        prompts = [prompt for pair in pairs for prompt in self.template.probability_prompts(pair)]
        tops = self.engine.next_token_logprobs(prompts, TOP_LOGPROBS, include=tuple(self.template.choices))
        judgments = []
        for i, pair in enumerate(pairs):
            first, second = tops[2 * i], tops[2 * i + 1]
            results = [probability_order_result(order, first, second, self.config.template) for order in self.orders]  # type: ignore[arg-type]
            judgment = self._judgment(pair, results)
            rating_a, rating_b = probability_ratings(self.template, first, second)
            judgment.ratings = {"A": rating_a, "B": rating_b}
            judgment.shortened = self.template.shortens(pair)
            judgments.append(judgment)
        return judgments

    def _score_chunk(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Rate both answers of every pair alone with written ratings (``samples`` each, averaged);
        the higher mean wins, equal means tie. As with probability ratings, every order shares
        the same two ratings."""
        prompts = [self.template.render_rating(pair, side) for pair in pairs for side in ("A", "B")]
        ratings = rate(self.engine, prompts, self.template, self.config.samples, self.config.sampling)  # type: ignore[arg-type]
        judgments = []
        for i, pair in enumerate(pairs):
            rating_a, rating_b = ratings[2 * i], ratings[2 * i + 1]
            results = [score_order_result(order, rating_a, rating_b, self.config.template) for order in self.orders]
            judgment = self._judgment(pair, results)
            judgment.ratings = {"A": rating_a.mean, "B": rating_b.mean}
            judgment.shortened = self.template.shortens(pair)
            judgments.append(judgment)
        return judgments

    def recorded_settings(self) -> dict[str, Any]:
        """The decoding settings every judgment records as ``sampling``: what shapes a verdict
        besides the engine, model, template and order (a rating judge reads probabilities, so
        only their depth)."""
        if self.template.reads_probabilities:
            return {"top_logprobs": TOP_LOGPROBS, "samples": 1}
        return {
            **self.config.sampling.to_dict(),  # type: ignore[union-attr]
            "samples": self.config.samples,
            "verdict_step": self.config.verdict_step,
            "allow_tie": self.config.allow_tie,
        }

    def producer(self) -> dict[str, Any]:
        """What produced this judge's judgments, as each judgment records it: a resumed output
        must come from the same (``resume.check_producer``); orders are checked per pair."""
        return {"engine": self.engine.name, "model": self.engine.model, "template": self.template.name, "sampling": self.recorded_settings()}

    def _judgment(self, pair: Pair, results: list[OrderResult]) -> Judgment:
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
            sampling=self.recorded_settings(),
            label=pair.label,
            metadata=pair.metadata,
        )

    def with_config(self, **changes) -> Judge:
        """The same engine with some configuration fields changed."""
        return Judge(self.engine, replace(self.config, **changes))


def score_order_result(order: Order, rating_a: WrittenRating, rating_b: WrittenRating, template: str) -> OrderResult:
    """One order's result of a written-rating judge, from each answer's sampled ratings
    (``rating_a`` for the pair's response A); ``raw`` holds the samples in the order shown."""
    verdict = verdict_from_ratings(rating_a.mean, rating_b.mean)
    shown = (rating_a, rating_b) if order == "given" else (rating_b, rating_a)
    return OrderResult(
        order=order,
        verdict=verdict,
        votes={verdict: 1} if verdict else {"invalid": 1},
        confidence=abs(rating_a.mean - rating_b.mean) if verdict else 0.0,  # type: ignore[operator]
        rationale=(
            f"rating of A: {_written_text(rating_a)}, rating of B: {_written_text(rating_b)} ({load_template(template).name})\n\n"
            + (rating_a.raw[0] if rating_a.raw else "")
        ),
        raw=[text for rating in shown for text in rating.raw],
    )


def _written_text(rating: WrittenRating) -> str:
    """``8.00 (spread 1.00 over 3 samples, 1 invalid)``: a written rating with its samples' spread."""
    if rating.mean is None:
        return f"invalid ({rating.invalid} of {len(rating.ratings)} samples without a rating)"
    if len(rating.ratings) == 1:
        return f"{rating.mean:g}"
    invalid = f", {rating.invalid} invalid" if rating.invalid else ""
    return f"{rating.mean:.2f} (spread {rating.spread:.2f} over {len(rating.ratings)} samples{invalid})"


def _rating_text(rating: float | None) -> str:
    return "invalid" if rating is None else f"{rating:.4f}"

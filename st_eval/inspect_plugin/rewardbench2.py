"""Task ``st_eval/rewardbench2`` (the evaluated model is the judge) and scorer
``st_eval/rating_judge`` (a grader model rates the task's output 1-10).

Glue only: prompts come from the RewardBench 2 module and the core templates, outputs are parsed
by the core (``kway.kway_verdict``, ``scores.written_rating``) and the metric scores rows with
``score_rewardbench2``, the code behind ``st-eval bench rewardbench2``.
"""

from __future__ import annotations

import math
import statistics

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import GenerateConfig, Model, get_model
from inspect_ai.scorer import Score, Scorer, Target, metric, scorer
from inspect_ai.scorer._metric import Metric, SampleScore
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.util import collect

from st_eval.benchmarks.rewardbench2 import (
    RATINGS_TEMPLATE, TIES_TEMPLATE, Protocol, RewardBench2Row, RowResult, kway_prompt, load_rewardbench2, rating_prompt,
    score_rewardbench2, ties_row_accuracy,
)
from st_eval.engines.base import ChatPrompt
from st_eval.errors import InputError
from st_eval.inspect_plugin.judging import to_core_messages, to_inspect_messages
from st_eval.inspect_plugin.options import one_line_options
from st_eval.inspect_plugin.tasks import invalid_figure, names
from st_eval.kway import kway_verdict
from st_eval.prompt import load_template
from st_eval.records import Pair
from st_eval.scores import written_rating

OUTPUTS_KEY = "judge_outputs"
INVALID = "invalid"


async def _sample(model: Model, prompts: list[ChatPrompt], samples: int, config: GenerateConfig | None = None) -> list[list[str]]:
    """``samples`` outputs per prompt, all requested concurrently (a batching provider sees them together)."""
    calls = [model.generate(to_inspect_messages(p), config=config or GenerateConfig()) for p in prompts for _ in range(samples)]
    texts = [o.completion for o in await collect(*calls)]
    return [texts[i * samples : (i + 1) * samples] for i in range(len(prompts))]


# ----------------------------------------------------------------------------- RewardBench 2 task


def _row(state: TaskState) -> RewardBench2Row:
    data = dict(state.metadata["row"])
    for key in ("chosen", "rejected"):
        data[key] = tuple(data[key])
    return RewardBench2Row(**data)


def _protocol(state: TaskState) -> Protocol:
    return Protocol(**state.metadata["protocol"])


@solver
def judge_rewardbench2_row() -> Solver:
    """Ask the evaluated model to judge the sample's row as its protocol says (4-way at each
    planned position, or a rating of each answer); raw outputs go to ``metadata['judge_outputs']``."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        row, protocol = _row(state), _protocol(state)
        if protocol.uses_ratings(row):
            template = load_template(protocol.rating_template(row.subset))
            prompts = [rating_prompt(row, answer, template) for answer in row.answers]
        else:
            template = load_template(protocol.kway_template)
            prompts = [kway_prompt(row, position, template) for position in protocol.positions(row)]
        outputs = await _sample(get_model(), prompts, protocol.samples)
        state.metadata[OUTPUTS_KEY] = outputs
        state.output.completion = outputs[0][0]
        state.messages.append(to_inspect_messages([{"role": "assistant", "content": outputs[0][0]}])[0])
        return state

    return solve


def row_result(row: RewardBench2Row, protocol: Protocol, outputs: list[list[str]]) -> RowResult:
    """Parse one row's outputs with the core and score it as ``st-eval bench rewardbench2`` does."""
    if protocol.uses_ratings(row):
        template = load_template(protocol.rating_template(row.subset))
        ratings = [written_rating(texts, template) for texts in outputs]
        return RowResult.from_ratings(row.id, row.subset, row.num_correct, [r.mean for r in ratings], sum(r.invalid for r in ratings))
    template = load_template(protocol.kway_template)
    verdicts = [kway_verdict(texts, template).verdict for texts in outputs]
    return RowResult.from_kway(row.id, row.subset, row.num_correct, protocol.positions(row), verdicts, template.verdict.letters)


@metric
def rewardbench2_metrics() -> Metric:
    """RewardBench 2 figures: ``score`` (unweighted mean of the subsets present), each subset's,
    and ``invalid`` (share of judge outputs with no verdict or rating)."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        results = [RowResult.from_dict(s.score.metadata["result"]) for s in scores]  # type: ignore[index]
        samples = int(scores[0].score.metadata.get("samples", 1)) if scores else 1  # type: ignore[union-attr]
        report = score_rewardbench2(results, samples=samples)
        figures = {"score": math.nan if report["headline"] is None else report["headline"]}
        figures.update({name: math.nan if f["score"] is None else f["score"] for name, f in report["subsets"].items()})
        figures["invalid"] = invalid_figure(report["invalid_rate"] if results else None)
        return figures

    return compute


@scorer(metrics=[rewardbench2_metrics()])
def rewardbench2_row() -> Scorer:
    """Score a judged RewardBench 2 row. Ties is scored across rows by the metric; a Ties row's
    own value is its accuracy term (1 when every correct answer is rated above every wrong one),
    as inspect-ai leaves samples without a number out of the metrics."""

    async def score(state: TaskState, target: Target) -> Score:
        outputs = state.metadata.get(OUTPUTS_KEY)
        if not outputs:
            raise InputError(f"sample {state.sample_id}: no judge outputs; run the task's judge_rewardbench2_row solver first")
        result = row_result(_row(state), _protocol(state), outputs)
        return Score(
            value=ties_row_accuracy(result) if result.score is None else result.score,
            answer=",".join(str(v) for v in (result.verdicts or result.ratings or ())),
            explanation=outputs[0][0],
            metadata={"result": result.to_dict(), "subset": result.subset, "samples": _protocol(state).samples},
        )

    return score


@task
@one_line_options("-T")
def rewardbench2(
    data_files: str | list[str] | None = None,
    subsets: str | list[str] | None = None,
    mode: str = "official",
    seed: int = 0,
    template: str | None = None,
    ties_template: str = TIES_TEMPLATE,
    samples: int = 1,
    max_tokens: int = 1024,
) -> Task:
    """RewardBench 2 with the evaluated model as the judge, scored as ``st-eval bench rewardbench2``.

    Args:
      data_files: local files in the hub schema (``id, prompt, chosen, rejected, num_correct,
        subset``; comma-separated); default: the hub dataset.
      subsets: keep only these subsets (comma-separated).
      mode: ``official`` (4-way, correct answer at a seeded position), ``all-positions`` or ``ratings``.
      seed: seed of the position draw.
      template: best-of-4 template (k-way; a score template with ``mode=ratings``).
      ties_template: rating template for Ties.
      samples: judgments per prompt (4-way: majority vote; ratings: mean).
      max_tokens: judge generation budget.
    """
    protocol = Protocol.for_mode(mode, template=template, seed=int(seed), samples=int(samples), ties_template=ties_template)
    rows = load_rewardbench2(names(data_files), subsets=names(subsets))
    dataset = MemoryDataset(
        [
            Sample(
                id=row.id,
                input=row.prompt,
                metadata={
                    "row": {"id": row.id, "prompt": row.prompt, "chosen": list(row.chosen), "rejected": list(row.rejected),
                            "num_correct": row.num_correct, "subset": row.subset, "metadata": row.metadata},
                    "protocol": protocol.describe(),
                    "subset": row.subset,
                },
            )
            for row in rows
        ],
        name="rewardbench2",
    )
    return Task(
        dataset=dataset,
        solver=judge_rewardbench2_row(),
        scorer=rewardbench2_row(),
        config=GenerateConfig(temperature=0.0 if protocol.samples == 1 else 0.7, max_tokens=int(max_tokens)),
        metadata={"benchmark": "rewardbench2", **protocol.describe()},
    )


# ----------------------------------------------------------------------------- rating_judge scorer


@metric
def mean_rating() -> Metric:
    """Mean rating over the samples the judge rated (invalid ones left out, counted by invalid_rating_rate)."""

    def compute(scores: list[SampleScore]) -> float:
        values = [s.score.as_float() for s in scores if s.score.answer != INVALID]
        return statistics.fmean(values) if values else math.nan

    return compute


@metric
def invalid_rating_rate() -> Metric:
    """Share of samples without any parseable rating."""

    def compute(scores: list[SampleScore]) -> float:
        return invalid_figure(sum(s.score.answer == INVALID for s in scores) / len(scores) if scores else None)

    return compute


@scorer(metrics=[mean_rating(), invalid_rating_rate()])
@one_line_options("-S")
def rating_judge(
    template: str = RATINGS_TEMPLATE,
    samples: int = 1,
    max_tokens: int = 1024,
    temperature: float | None = None,
    model_role: str = "grader",
) -> Scorer:
    """Grade the task's output on its own, 1-10, with a written-rating judge.

    The judge is the model bound to the ``grader`` role (``--model-role grader=...``; unbound,
    the evaluated model grades itself). The value is the mean of ``samples`` ratings (invalid
    ones left out); when none parses, the answer is ``invalid`` and the value 0, off the scale,
    left out of ``mean_rating`` and counted by ``invalid_rating_rate`` (inspect-ai leaves
    samples without a number out of every metric). The explanation is the judge's first output;
    the metadata holds every sampled rating and their spread.

    Args:
      template: a ``score`` template (default: RewardBench 2's 1-10 ratings prompt).
      samples: ratings per output, averaged (sampled at temperature 0.7 when > 1).
      max_tokens: judge generation budget.
      temperature: override the decoding temperature (default 0 for one sample, 0.7 for several).
      model_role: model role of the judge.
    """
    loaded = load_template(template)
    if not loaded.is_score:
        raise InputError(f"rating_judge needs a score template (a written 1-10 rating); {loaded.name!r} is of kind {loaded.kind!r}")
    config = GenerateConfig(
        temperature=temperature if temperature is not None else (0.0 if int(samples) == 1 else 0.7),
        max_tokens=int(max_tokens),
    )

    async def score(state: TaskState, target: Target) -> Score:
        pair = Pair(id=str(state.sample_id), conversation=to_core_messages(state.input), response_a=state.output.completion, response_b="")
        judge_model = get_model(role=model_role)
        (outputs,) = await _sample(judge_model, [loaded.render_rating(pair, "A")], int(samples), config)
        rating = written_rating(outputs, loaded)
        return Score(
            value=0.0 if rating.mean is None else rating.mean,
            answer=INVALID if rating.mean is None else f"{rating.mean:g}",
            explanation=outputs[0],
            metadata={"judge": str(judge_model), "template": loaded.name, **rating.to_dict()},
        )

    return score


__all__ = ["judge_rewardbench2_row", "rating_judge", "rewardbench2", "rewardbench2_metrics", "rewardbench2_row", "row_result"]

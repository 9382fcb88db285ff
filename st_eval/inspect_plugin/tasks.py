"""Tasks ``st_eval/rewardbench`` and ``st_eval/mtbench_agreement``: the evaluated model is the judge.

Loading and scoring come from ``st_eval.benchmarks`` (the same code as ``st-eval bench``), so
the numbers match the CLI's and the published benchmarks'. Each sample is one pair; the solver
asks the model for the judge prompt in each planned order (core ``build_prompt``) and keeps the
raw outputs; the scorers parse them with the core (``order_result``) and the metrics aggregate
with the benchmark scoring (``score_rewardbench``, ``score_both_orders``, ``mtbench_agreement``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import get_model
from inspect_ai.scorer import Score, Scorer, Target, metric, scorer
from inspect_ai.scorer._metric import Metric, SampleScore
from inspect_ai.solver import Generate, Solver, TaskState, solver

from st_eval.benchmarks.mtbench import load_mtbench_human
from st_eval.benchmarks.mtbench import mtbench_agreement as agreement_report
from st_eval.benchmarks.rewardbench import (
    load_rewardbench,
    pair_score,
    score_both_orders,
    score_rewardbench,
    section_of,
)
from st_eval.benchmarks.runner import MODES, planned_orders
from st_eval.errors import InputError
from st_eval.inspect_plugin.judging import decide, generate_config, sample_judge, template_for, to_inspect_messages
from st_eval.inspect_plugin.options import one_line_options
from st_eval.judge import JudgeConfig, build_prompt, unswap
from st_eval.prompt import DEFAULT_TEMPLATE, load_template
from st_eval.records import Message, Order, Pair
from st_eval.summary import invalid_warning

log = logging.getLogger(__name__)

OUTPUTS_KEY = "judge_outputs"
TEMPLATE_KEY = "judge_template"


# ----------------------------------------------------------------------------- samples and solver


def names(value: str | list[str] | None) -> list[str] | None:
    """``-T subsets=a,b`` (or a YAML list) as a list of names."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()] or None


def pair_from_metadata(data: dict[str, Any]) -> Pair:
    """Rebuild a Pair stored in sample metadata by ``Pair.to_dict``."""
    fields = dict(data)
    fields["conversation"] = [Message(**m) for m in data["conversation"]]
    return Pair(**fields)


def judge_sample(pair: Pair, orders: tuple[Order, ...], config: JudgeConfig, **metadata: Any) -> Sample:
    """One pair as a sample: input is the judge prompt of its first order (the solver builds the
    prompts it sends, with the judge's own template when none is named)."""
    shown_label = unswap(pair.label, orders[0])  # the swap is its own inverse: pair label -> shown label
    template = load_template(config.template)
    shown = template.render_rating(pair, "A" if orders[0] == "given" else "B") if template.one_answer else build_prompt(pair, orders[0], config.template, config.allow_tie)
    return Sample(
        id=pair.id,
        input=to_inspect_messages(shown),
        target=f"[[{shown_label}]]" if shown_label in ("A", "B") else "",
        metadata={"orders": list(orders), "label": pair.label, "pair": pair.to_dict(), **metadata},
    )


@solver
def judge_pair(template: str | None = None, samples: int = 1, allow_tie: bool = False) -> Solver:
    """Ask the evaluated model to judge the sample's pair in each order listed in its metadata.

    The raw outputs go to ``metadata['judge_outputs']`` (order -> samples) for the scorer; the
    first one also becomes the sample's output so the log viewer shows it. ``template``
    defaults to an ``st_judge`` model's own (its judge card's or an embedded judge's), else pairwise-v1; the one used
    is recorded in ``metadata['judge_template']``.
    """

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        pair = pair_from_metadata(state.metadata["pair"])
        model = get_model()
        config = JudgeConfig(template=template_for(model, template), samples=int(samples), allow_tie=allow_tie)
        outputs = await sample_judge(model, pair, config, orders=state.metadata["orders"])
        state.metadata[OUTPUTS_KEY] = outputs
        state.metadata[TEMPLATE_KEY] = config.template
        first = next(iter(outputs.values()))[0]
        state.output.completion = first
        state.messages.append(to_inspect_messages([{"role": "assistant", "content": first}])[0])
        return state

    return solve


def _judged(state: TaskState, allow_tie: bool):
    outputs = state.metadata.get(OUTPUTS_KEY)
    if not outputs:
        raise InputError(f"sample {state.sample_id}: no judge outputs; run the task's judge_pair solver first")
    return decide(outputs, allow_tie, state.metadata.get(TEMPLATE_KEY))


def _task_config(samples: int, max_tokens: int):
    return generate_config(JudgeConfig(samples=int(samples)).sampling, max_tokens=int(max_tokens))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- RewardBench


@metric
def rewardbench_metrics() -> Metric:
    """RewardBench figures: ``score`` (plain mean of the sections present), each section, each subset.

    With both orders per pair the per-pair score is the mean of the two orders' official scores
    (the expected one-random-order score); ``given``/``swapped`` accuracy, ``consistent`` (right
    in both orders) and ``invalid`` (share of orders without a verdict) are added.
    """

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        rows = [(s.score.metadata["subset"], s.score.as_float()) for s in scores]  # type: ignore[index]
        official = score_rewardbench(rows)
        figures: dict[str, float] = {"score": _number(official["headline"])}
        figures.update({name: value for name, value in official["sections"].items()})
        figures.update({name: entry["accuracy"] for name, entry in official["subsets"].items()})
        if scores and all(len(s.score.metadata["orders"]) == 2 for s in scores):  # type: ignore[index]
            both = score_both_orders(
                (s.score.metadata["subset"], s.score.metadata["label"], list(s.score.metadata["orders"].items()))  # type: ignore[index]
                for s in scores
            )
            figures.update({order: _number(acc) for order, acc in both["accuracy_per_order"].items()})
            figures["consistent"] = _number(both["consistent_accuracy"])
            figures["invalid"] = invalid_figure(both["invalid_rate"])
        else:
            figures["invalid"] = invalid_figure(sum(s.score.answer == "invalid" for s in scores) / len(scores) if scores else None)
        return figures

    return compute


@scorer(metrics=[rewardbench_metrics()])
def rewardbench_verdict(allow_tie: bool = False) -> Scorer:
    """Score a judged pair as RewardBench does: 1 right, 0 wrong, 0.5 unparseable (mean over orders)."""

    async def score(state: TaskState, target: Target) -> Score:
        results, verdict, _ = _judged(state, allow_tie)
        label = state.metadata["label"]
        per_order = {r.order: r.verdict for r in results}
        value = sum(pair_score(v, label) for v in per_order.values()) / len(per_order)
        return Score(
            value=value,
            answer=verdict if verdict is not None else "invalid",
            explanation=results[0].rationale,
            metadata={"subset": state.metadata["subset"], "label": label, "orders": per_order},
        )

    return score


@task
@one_line_options("-T")
def rewardbench(
    data_files: str | list[str] | None = None,
    subsets: str | list[str] | None = None,
    split: str = "filtered",
    mode: str = "official",
    seed: int = 0,
    template: str | None = None,
    samples: int = 1,
    allow_tie: bool = False,
    max_tokens: int = 512,
) -> Task:
    """RewardBench with the evaluated model as a pairwise judge.

    Args:
      data_files: local files in the hub schema (``prompt, chosen, rejected, subset, id``;
        JSONL/JSON/parquet, comma-separated) or an LLMBar folder; default: the hub dataset.
      subsets: keep only these subsets (comma-separated).
      split: hub split (``filtered`` is the leaderboard's).
      mode: ``official`` (one seeded random order per pair) or ``both-orders`` (adds per-order,
        position-consistent and invalid figures; not the official number).
      seed: seed of the official order choice.
      template: st-eval judge template name or YAML path; default: an ``st_judge`` model's own
        (its judge card's or an embedded judge's), else pairwise-v1.
      samples: judgments per order, majority-voted (sampled at 0.7/0.9 when > 1).
      allow_tie: let the judge answer ``[[C]]`` (scored 0.5 like an unparseable verdict).
      max_tokens: judge generation budget (the CLI's ``--max-tokens`` overrides it).
    """
    if mode not in MODES:
        raise InputError(f"-T mode must be one of {', '.join(MODES)}, got {mode!r}")
    config = JudgeConfig(template=template or DEFAULT_TEMPLATE, samples=int(samples), allow_tie=allow_tie)
    pairs = load_rewardbench(names(data_files), split=split, subsets=names(subsets))
    dataset = MemoryDataset(
        [
            judge_sample(
                pair,
                planned_orders(pair, mode, int(seed)),
                config,
                subset=pair.metadata["subset"],
                section=section_of(pair.metadata["subset"]) or "other",
            )
            for pair in pairs
        ],
        name="rewardbench",
    )
    return Task(
        dataset=dataset,
        solver=judge_pair(template=template, samples=samples, allow_tie=allow_tie),
        scorer=rewardbench_verdict(allow_tie=allow_tie),
        config=_task_config(samples, max_tokens),
        metadata={"benchmark": "rewardbench", "mode": mode, "seed": int(seed)},
    )


# ----------------------------------------------------------------------------- MT-Bench agreement


@metric
def mtbench_metrics() -> Metric:
    """Judge-human agreement per turn as the MT-Bench paper computes it, with and without ties,
    plus the human-human agreement of the same comparisons for reference, and ``invalid``
    (share of judged orders with no parseable verdict)."""

    def compute(scores: list[SampleScore]) -> dict[str, float]:
        report = agreement_report(
            ({"turn": s.score.metadata["turn"], "votes": s.score.metadata["votes"]}, s.score.metadata["verdict"])  # type: ignore[index]
            for s in scores
        )
        figures: dict[str, float] = {}
        for turn, entry in report.items():
            figures[f"{turn}_with_tie"] = _number(entry["with_tie"]["agreement"])
            figures[f"{turn}_without_tie"] = _number(entry["without_tie"]["agreement"])
            figures[f"{turn}_human_with_tie"] = _number(entry["human_human"]["with_tie"]["agreement"])
            figures[f"{turn}_human_without_tie"] = _number(entry["human_human"]["without_tie"]["agreement"])
        orders = [v for s in scores for v in s.score.metadata["orders"].values()]  # type: ignore[index]
        figures["invalid"] = invalid_figure(sum(v is None for v in orders) / len(orders) if orders else None)
        return figures

    return compute


@scorer(metrics=[mtbench_metrics()])
def mtbench_verdict(allow_tie: bool = False) -> Scorer:
    """The judge's verdict on an MT-Bench comparison (a verdict that flips with the order is a
    tie); the value is this comparison's agreement with its expert votes, ties included."""

    async def score(state: TaskState, target: Target) -> Score:
        results, verdict, consistent = _judged(state, allow_tie)
        votes = state.metadata["votes"]
        turn = state.metadata["turn"]
        single = agreement_report([({"turn": turn, "votes": votes}, verdict)]).get(f"turn{turn}")
        agreement = single["with_tie"]["agreement"] if single else None
        return Score(
            value=_number(agreement),
            answer=verdict if verdict is not None else "invalid",
            explanation=results[0].rationale,
            metadata={
                "turn": turn,
                "votes": votes,
                "verdict": verdict,
                "consistent": consistent,
                "orders": {r.order: r.verdict for r in results},
            },
        )

    return score


@task
@one_line_options("-T")
def mtbench_agreement(
    data_files: str | list[str] | None = None,
    split: str = "human",
    turns: str | int | list[int] | None = None,
    template: str | None = None,
    samples: int = 1,
    allow_tie: bool = True,
    max_tokens: int = 512,
) -> Task:
    """MT-Bench human agreement with the evaluated model as the pair judge.

    Every (question, model pair, turn) with an expert vote is judged in both orders, as the
    paper's pair judge was; a verdict that flips with the order is a tie.

    Args:
      data_files: local files in the ``lmsys/mt_bench_human_judgments`` schema (comma-separated);
        default: the hub dataset.
      split: hub split (``human``).
      turns: judge only these turns (``1``, ``2`` or ``1,2``).
      template, samples, allow_tie, max_tokens: as for ``st_eval/rewardbench`` (ties allowed by
        default: the paper's judge could answer tie).
    """
    pairs = load_mtbench_human(names(data_files), split=split)
    wanted = {int(t) for t in names(str(turns) if isinstance(turns, int) else turns) or ["1", "2"]}
    config = JudgeConfig(template=template or DEFAULT_TEMPLATE, samples=int(samples), allow_tie=allow_tie)
    dataset = MemoryDataset(
        [
            judge_sample(pair, ("given", "swapped"), config, turn=pair.metadata["turn"], votes=pair.metadata["votes"])
            for pair in pairs
            if int(pair.metadata["turn"]) in wanted
        ],
        name="mtbench_agreement",
    )
    if not len(dataset):
        raise InputError(f"-T turns={turns}: no comparisons for those turns")
    return Task(
        dataset=dataset,
        solver=judge_pair(template=template, samples=samples, allow_tie=allow_tie),
        scorer=mtbench_verdict(allow_tie=allow_tie),
        config=_task_config(samples, max_tokens),
        metadata={"benchmark": "mtbench_agreement"},
    )


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def invalid_figure(rate: float | None) -> float:
    """An invalid-rate metric (NaN when nothing was judged), with one logged warning when it is
    above ``summary.INVALID_WARNING_RATE``."""
    warning = invalid_warning(rate, "judged orders")
    if warning:
        log.warning(warning)
    return _number(rate)

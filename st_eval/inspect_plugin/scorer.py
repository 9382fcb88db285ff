"""Scorer ``st_eval/pairwise_judge``: an st-eval judge compares a task's output with a baseline.

The sample's output is response A and the baseline (the target, or a metadata field) is
response B; the judge is the model bound to the ``grader`` role (the evaluated model when no
role is bound). Use it as a task's scorer (``inspect eval ... --model-role grader=...``) or on
an existing log (``inspect score LOG --scorer st_eval/pairwise_judge``).
"""

from __future__ import annotations

from inspect_ai.model import get_model
from inspect_ai.scorer import Score, Scorer, Target, metric, scorer, stderr
from inspect_ai.scorer._metric import Metric, SampleScore
from inspect_ai.solver import TaskState

from st_eval.errors import InputError
from st_eval.judge import JudgeConfig
from st_eval.inspect_plugin.judging import decide, generate_config, sample_judge, template_for, to_core_messages
from st_eval.inspect_plugin.options import one_line_options
from st_eval.inspect_plugin.tasks import invalid_figure
from st_eval.records import Pair

#: score of each outcome: the output wins, loses, or the judge cannot tell (tie, a verdict that
#: flips with the order, or no parseable verdict: counted as half, as RewardBench does).
OUTCOME_SCORES = {"win": 1.0, "loss": 0.0, "tie": 0.5, "invalid": 0.5}


@metric
def win_rate() -> Metric:
    """Mean score: share of wins, ties and undecided counted as half."""

    def compute(scores: list[SampleScore]) -> float:
        values = [s.score.as_float() for s in scores]
        return sum(values) / len(values) if values else float("nan")

    return compute


@metric
def invalid_rate() -> Metric:
    """Share of samples where the judge gave no parseable verdict."""

    def compute(scores: list[SampleScore]) -> float:
        flags = [s.score.answer == "invalid" for s in scores]
        return invalid_figure(sum(flags) / len(flags) if flags else None)

    return compute


@scorer(metrics=[win_rate(), stderr(), invalid_rate()])
@one_line_options("-S")
def pairwise_judge(
    baseline: str | None = None,
    reference: str | None = None,
    order: str = "both",
    samples: int = 1,
    template: str | None = None,
    allow_tie: bool = False,
    max_tokens: int = 512,
    temperature: float | None = None,
    model_role: str = "grader",
) -> Scorer:
    """Grade the output against a baseline answer with an st-eval pairwise judge.

    Args:
      baseline: metadata field holding the baseline answer; default: the sample's target.
      reference: metadata field with a reference answer shown to the judge (optional).
      order: ``both`` (judge both presentation orders; a verdict that flips is a tie),
        ``given`` (output shown first) or ``swapped``.
      samples: judgments per order, majority-voted (sampled at 0.7/0.9 when > 1).
      template: st-eval judge template name or YAML path; default: an ``st_judge`` model's own
        (its judge card's or an embedded judge's), else pairwise-v1. A rating template rates each answer alone from
        the judge's top next-token log-probabilities (the model must return logprobs).
      allow_tie: let the judge answer ``[[C]]``.
      max_tokens: judge generation budget.
      temperature: override the decoding temperature (default greedy, 0.7 for votes).
      model_role: model role of the judge; unbound, the evaluated model judges.
    """
    async def score(state: TaskState, target: Target) -> Score:
        pair = Pair(
            id=str(state.sample_id),
            conversation=to_core_messages(state.input),
            response_a=state.output.completion,
            response_b=_field(state, baseline, "baseline") if baseline else target.text,
            reference=_field(state, reference, "reference") if reference else None,
        )
        if not pair.response_b:
            raise InputError(
                f"sample {state.sample_id}: no baseline answer: give the sample a target or pass -S baseline=<metadata field>"
            )
        judge_model = get_model(role=model_role)
        config = JudgeConfig(template=template_for(judge_model, template), samples=int(samples), order=order, allow_tie=allow_tie)  # type: ignore[arg-type]
        generate = generate_config(config.sampling, max_tokens=int(max_tokens), temperature=temperature)  # type: ignore[arg-type]
        outputs = await sample_judge(judge_model, pair, config, generate)
        results, verdict, consistent = decide(outputs, config.allow_tie, config.template)
        outcome = {"A": "win", "B": "loss", "tie": "tie", None: "invalid"}[verdict]
        return Score(
            value=OUTCOME_SCORES[outcome],
            answer=outcome,
            explanation=next((r.rationale for r in results if r.verdict == verdict), results[0].rationale),
            metadata={
                "judge": str(judge_model),
                "judge_role": judge_model.role,
                "template": config.template,
                "verdict": verdict,
                "consistent": consistent,
                "orders": {r.order: {"verdict": r.verdict, "votes": r.votes} for r in results},
            },
        )

    return score


def _field(state: TaskState, key: str, what: str) -> str:
    value = state.metadata.get(key)
    if not isinstance(value, str):
        raise InputError(f"sample {state.sample_id}: metadata field {key!r} ({what} answer) is missing or not a string")
    return value

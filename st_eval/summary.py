"""Aggregate figures over judgments: accuracy, position consistency, invalid rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from st_eval.records import Judgment

#: how ``st-eval judge`` scores a pair: its accuracy is a plain hit rate, where the benchmarks
#: score an unparseable verdict or a tie 0.5 as RewardBench does; every table says which it uses
ACCURACY_RULE = "invalid and tie count as wrong"
#: the benchmarks' rule (RewardBench's for generative judges)
BENCH_RULE = "invalid and tie score 0.5"
#: above this share of judge outputs without a parseable verdict, a score mostly measures the
#: rule for invalid outputs (0.5, or wrong) rather than the judge: every door prints a warning.
#: A tenth keeps a judge that fails now and then quiet and flags one that fails routinely.
INVALID_WARNING_RATE = 0.10


def invalid_warning(rate: float | None, what: str = "judge outputs") -> str | None:
    """One warning line when ``rate`` (share of ``what`` without a parseable verdict) is above
    :data:`INVALID_WARNING_RATE`, else None."""
    if rate is None or rate <= INVALID_WARNING_RATE:
        return None
    return (
        f"warning: {100 * rate:.1f}% of {what} had no parseable verdict (above {100 * INVALID_WARNING_RATE:.0f}%): "
        "the score measures how invalid outputs are counted more than the judge"
    )


@dataclass
class JudgmentSummary:
    """Counts and rates over a set of judgments.

    accuracy: share of labelled pairs whose verdict equals the label (ties and invalid count
        as wrong: :data:`ACCURACY_RULE`); None without labels.
    order_accuracy: per presentation order, accuracy of that order's own verdict.
    consistency: share of pairs judged in both orders whose two verdicts agree.
    invalid_rate: share of samples whose output had no parseable verdict.
    forced_rate: share of samples whose verdict the verdict step wrote (0 when it is off).
    shortened_rate: share of pairs the judge read shortened (a template bound on what it reads).
    """

    n: int
    verdicts: dict[str, int]
    accuracy: float | None
    order_accuracy: dict[str, float]
    consistency: float | None
    invalid_rate: float
    mean_confidence: float
    forced_rate: float = 0.0
    shortened_rate: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(judgments: Sequence[Judgment]) -> JudgmentSummary:
    verdicts: dict[str, int] = {}
    for j in judgments:
        key = j.verdict or "invalid"
        verdicts[key] = verdicts.get(key, 0) + 1
    labelled = [j for j in judgments if j.label is not None]
    accuracy = sum(j.correct for j in labelled) / len(labelled) if labelled else None
    order_accuracy: dict[str, float] = {}
    for name in ("given", "swapped"):
        results = [(j, j.order(name)) for j in labelled if j.order(name) is not None]
        if results:
            order_accuracy[name] = sum(r.verdict == j.label for j, r in results) / len(results)
    both = [j for j in judgments if len(j.orders) == 2]
    consistency = sum(j.consistent is True for j in both) / len(both) if both else None
    samples = sum(sum(r.votes.values()) for j in judgments for r in j.orders)
    invalid = sum(r.invalid for j in judgments for r in j.orders)
    forced = sum(r.forced for j in judgments for r in j.orders)
    return JudgmentSummary(
        n=len(judgments),
        verdicts=verdicts,
        accuracy=accuracy,
        order_accuracy=order_accuracy,
        consistency=consistency,
        invalid_rate=invalid / samples if samples else 0.0,
        mean_confidence=sum(j.confidence for j in judgments) / len(judgments) if judgments else 0.0,
        forced_rate=forced / samples if samples else 0.0,
        shortened_rate=sum(j.shortened for j in judgments) / len(judgments) if judgments else 0.0,
    )

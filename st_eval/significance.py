"""Confidence intervals and tests for judge figures: how sure can a reader be of a number?

A judge figure is a claim about a population of pairs, so every report that compares judges
gives an interval, not just a point. Two judges scored on the *same* pairs are compared
pairwise: the paired bootstrap resamples pairs (keeping each pair's two scores together), and
McNemar's exact test counts the pairs where exactly one of the two judges was right. Both are
computed with the standard library alone so the figures are reproducible anywhere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass
class Interval:
    """A two-sided confidence interval for one statistic."""

    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def binomial_pmf(i: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0 if i == 0 else 0.0
    if p >= 1:
        return 1.0 if i == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    return math.exp(log)


def clopper_pearson(k: int, n: int, confidence: float) -> Interval:
    """Exact binomial interval for k successes in n trials (by bisection on the binomial tail)."""
    if n == 0:
        return Interval(0.0, 1.0)
    alpha = 1 - confidence

    def upper_tail(p: float) -> float:  # P(X >= k)
        return sum(binomial_pmf(i, n, p) for i in range(k, n + 1))

    def lower_tail(p: float) -> float:  # P(X <= k)
        return sum(binomial_pmf(i, n, p) for i in range(0, k + 1))

    low = 0.0 if k == 0 else _bisect(lambda p: upper_tail(p) - alpha / 2, increasing=True)
    high = 1.0 if k == n else _bisect(lambda p: lower_tail(p) - alpha / 2, increasing=False)
    return Interval(low, high)


def _bisect(f, increasing: bool, steps: int = 60) -> float:
    """The root in [0, 1] of a monotone function."""
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if (f(mid) < 0) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def percentile_interval(values: Sequence[float], confidence: float) -> Interval:
    """The central ``confidence`` share of ``values`` (the percentile bootstrap interval)."""
    ordered = sorted(values)
    tail = (1 - confidence) / 2
    last = len(ordered) - 1
    return Interval(ordered[int(math.floor(tail * last))], ordered[int(math.ceil((1 - tail) * last))])


def bootstrap_mean(scores: Sequence[float], *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of per-pair scores."""
    n = len(scores)
    if n == 0:
        raise ValueError("no scores to bootstrap")
    rng = random.Random(seed)
    means = [sum(rng.choices(scores, k=n)) / n for _ in range(resamples)]
    return percentile_interval(means, confidence)


def mcnemar_exact(baseline: Sequence[bool], candidate: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes on the same pairs.

    Only discordant pairs count: b = right only for the baseline, c = right only for the
    candidate. Under "no difference" each discordant pair is a fair coin, so
    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2).
    """
    if len(baseline) != len(candidate):
        raise ValueError("McNemar needs the same pairs for both judges")
    b = sum(1 for x, y in zip(baseline, candidate) if x and not y)
    c = sum(1 for x, y in zip(baseline, candidate) if y and not x)
    if b + c == 0:
        return 1.0
    tail = sum(binomial_pmf(i, b + c, 0.5) for i in range(0, min(b, c) + 1))
    return min(1.0, 2 * tail)


@dataclass
class PairedComparison:
    """A candidate judge against a baseline on the same n pairs, for one per-pair score.

    baseline, candidate: mean scores; gain: candidate - baseline; gain_ci: paired percentile
    bootstrap interval of the gain (pairs resampled with replacement, both judges' scores of a
    pair kept together); mcnemar_p: exact McNemar p-value when the scores are right/wrong (0/1),
    else None (a test of binary outcomes does not apply to averaged scores).
    """

    n: int
    baseline: float
    candidate: float
    gain: float
    gain_ci: Interval
    confidence: float
    resamples: int
    mcnemar_p: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def paired_comparison(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare two judges' per-pair scores (aligned: item i is the same pair for both)."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired comparison needs the same pairs: {len(baseline)} vs {len(candidate)} scores")
    n = len(baseline)
    if n == 0:
        raise ValueError("no pairs to compare")
    differences = [c - b for b, c in zip(baseline, candidate)]
    rng = random.Random(seed)
    gains = []
    for _ in range(resamples):
        sample = rng.choices(differences, k=n)
        gains.append(sum(sample) / n)
    binary = all(v in (0, 1) for v in (*baseline, *candidate))
    p = mcnemar_exact([v == 1 for v in baseline], [v == 1 for v in candidate]) if binary else None
    return PairedComparison(
        n=n,
        baseline=sum(baseline) / n,
        candidate=sum(candidate) / n,
        gain=sum(differences) / n,
        gain_ci=percentile_interval(gains, confidence),
        confidence=confidence,
        resamples=resamples,
        mcnemar_p=p,
    )


__all__ = [
    "Interval",
    "PairedComparison",
    "binomial_pmf",
    "bootstrap_mean",
    "clopper_pearson",
    "mcnemar_exact",
    "paired_comparison",
    "percentile_interval",
]

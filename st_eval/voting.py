"""Majority voting over sampled verdicts, and the combination of the two presentation orders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from st_eval.records import OrderResult, Verdict
from st_eval.verdict import ParsedVerdict


def tally(parsed: Sequence[ParsedVerdict]) -> dict[str, int]:
    """Count votes per verdict (``A``, ``B``, ``tie``; a k-way judge's ``C``, ``D``, ...);
    unparseable samples are counted under ``invalid``. Keys come in a fixed order: letters,
    then ``tie``, then ``invalid``."""
    counts = Counter(p.verdict if p.verdict is not None else "invalid" for p in parsed)
    return {key: counts[key] for key in sorted(counts, key=lambda k: (k in ("tie", "invalid"), k == "invalid", k))}


def majority(votes: dict[str, int]) -> tuple[Verdict | None, float]:
    """The most voted verdict and its margin over the runner-up, as a share of all samples.

    Invalid samples never win but do count in the denominator, so a judge that mostly fails
    to answer reports a low confidence. A split between two verdicts is a ``tie`` with margin 0.
    """
    total = sum(votes.values())
    valid = sorted(((n, v) for v, n in votes.items() if v != "invalid"), reverse=True)
    if not valid:
        return None, 0.0
    top_count, top = valid[0]
    runner_up = valid[1][0] if len(valid) > 1 else 0
    if top_count == runner_up:
        return "tie", 0.0
    return top, (top_count - runner_up) / total  # type: ignore[return-value]


def combine_orders(results: Sequence[OrderResult]) -> tuple[Verdict | None, float, bool | None]:
    """Merge per-order results into (verdict, confidence, consistent).

    One order: its result. Both orders: the shared verdict when they agree; a ``tie`` when they
    disagree (the verdict followed the position, not the content); invalid if either is invalid.
    """
    if len(results) == 1:
        only = results[0]
        return only.verdict, only.confidence, None
    verdicts = [r.verdict for r in results]
    if any(v is None for v in verdicts):
        return None, 0.0, None
    if len(set(verdicts)) == 1:
        return verdicts[0], min(r.confidence for r in results), True
    return "tie", 0.0, False

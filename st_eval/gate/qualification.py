"""Judge qualification: refuse to gate with a judge that fails a labelled benchmark.

The benchmark is RewardBench as st-eval's benchmark loaders read it
(:func:`st_eval.benchmarks.rewardbench.load_rewardbench`): ``rewardbench`` for the hub dataset,
a folder of LLMBar release files (the five LLMBar sets of RewardBench's "Chat Hard"), or local
files in RewardBench's schema (``prompt, chosen, rejected, subset``). ``subsets`` narrows it.

The judge runs exactly as the gate runs it (both orders, same template and sampling), and a
pair counts as right only when the judge picks the better answer in both orders: an
order-flipping verdict is a tie and counts as wrong.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from st_eval.benchmarks.rewardbench import load_rewardbench
from st_eval.errors import InputError
from st_eval.records import Judgment, Pair
from st_eval.summary import summarize

HUB_NAME = "rewardbench"


@dataclass
class Qualification:
    """The judge's result on the qualification benchmark.

    accuracy: share of pairs where the judge picked the labelled better answer in both orders.
    passed: accuracy >= min_accuracy.
    """

    benchmark: str
    n: int
    accuracy: float
    position_consistency: float | None
    min_accuracy: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_benchmark(source: str, subsets: list[str] | None = None, limit: int | None = None, seed: int = 0) -> list[Pair]:
    """Labelled pairs for qualification; ``limit`` draws a seeded sample of that many."""
    if source == HUB_NAME:
        pairs = load_rewardbench(None, subsets=subsets)
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"--qualify-on {source}: not found (give {HUB_NAME!r}, an LLMBar folder or RewardBench-schema files)")
        pairs = load_rewardbench(path, subsets=subsets)
    if limit is not None and limit < len(pairs):
        pairs = random.Random(seed).sample(pairs, limit)
    return pairs


def qualification(benchmark: str, judgments: list[Judgment], min_accuracy: float) -> Qualification:
    summary = summarize(judgments)
    accuracy = summary.accuracy or 0.0
    return Qualification(
        benchmark=benchmark,
        n=summary.n,
        accuracy=accuracy,
        position_consistency=summary.consistency,
        min_accuracy=min_accuracy,
        passed=accuracy >= min_accuracy,
    )

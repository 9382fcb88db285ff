"""Judge qualification: refuse to gate with a judge that fails a labelled benchmark.

The benchmark is a file or a folder of files of labelled pairs in any of these row formats:

* LLMBar (as RewardBench's "Chat Hard" uses it): ``{"input", "output_1", "output_2", "label": 1|2}``;
* RewardBench: ``{"prompt", "chosen", "rejected"}`` (the chosen answer is the better one);
* st-eval pair files: ``{"instruction", "response_a", "response_b", "label": "A"|"B"}``.

The judge is run exactly as the gate runs it (both orders, same sampling and template), so an
order-flipping verdict is a tie and counts as wrong.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.pair_files import pair_from_row, read_rows
from st_eval.records import Judgment, Pair
from st_eval.summary import summarize

_SUFFIXES = (".json", ".jsonl", ".parquet")


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


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    if "output_1" in row and "output_2" in row:
        return {"instruction": row.get("input"), "response_a": row["output_1"], "response_b": row["output_2"], "label": row.get("label")}
    if "chosen" in row and "rejected" in row:
        return {"instruction": row.get("prompt"), "response_a": row["chosen"], "response_b": row["rejected"], "label": "A"}
    return row


def load_benchmark(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Pair]:
    """Labelled pairs from a file or every data file of a folder; ``limit`` draws a seeded sample."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise InputError(f"{path}: folder holds no .json, .jsonl or .parquet files")
    elif path.exists():
        files = [path]
    else:
        raise InputError(f"{path}: qualification benchmark not found")
    pairs = []
    for file in files:
        for number, row in read_rows(file):
            where = f"{file}: line {number}"
            pair = pair_from_row(_normalise(row), where, f"{file.stem}:{number}")
            if pair.label not in ("A", "B"):
                raise InputError(f"{where}: field 'label' is required (A/B or 1/2) for judge qualification")
            pair.id = f"{file.stem}:{number}"
            pairs.append(pair)
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

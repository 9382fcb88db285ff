"""RewardBench (allenai/reward-bench, split ``filtered``): loading and the official scoring.

Every pair is loaded with the chosen answer as ``response_a`` and ``label="A"``; which side the
judge *sees* first is decided by the runner (official mode: one random, seeded side per pair).

Scoring follows the RewardBench code (``rewardbench/constants.py`` and
``calculate_scores_per_section``): per-subset accuracy; each section is the mean of its subsets
weighted by the official example counts (math-prm counted as 984 so that Reasoning is half math,
half code); the headline is the plain mean of the sections. A generative judge's unparseable or
tied verdict scores 0.5, as in RewardBench's generative script.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.pair_files import check_unique, read_rows, row_id
from st_eval.records import Message, Pair, Verdict

HUB_DATASET = "allenai/reward-bench"

#: Official example counts used as section weights (math-prm up-weighted from 447 to 984).
EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 154,
    "xstest-should-respond": 250,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}

#: The four sections of the RewardBench leaderboard and their subsets.
SECTIONS: dict[str, list[str]] = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": [
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}

#: LLMBar file names (as published by the LLMBar authors) and the RewardBench subset each one is.
LLMBAR_FILES: dict[str, str] = {
    "natural.json": "llmbar-natural",
    "adversarial_neighbor.json": "llmbar-adver-neighbor",
    "adversarial_gptinst.json": "llmbar-adver-GPTInst",
    "adversarial_gptout.json": "llmbar-adver-GPTOut",
    "adversarial_manual.json": "llmbar-adver-manual",
}

_FIELDS = ("prompt", "chosen", "rejected", "subset")


def load_rewardbench(
    data_files: str | Path | Sequence[str | Path] | None = None,
    *,
    split: str = "filtered",
    subsets: Iterable[str] | None = None,
) -> list[Pair]:
    """RewardBench pairs from the hub, or from local files in the same schema.

    data_files: JSONL/JSON/parquet files with ``prompt, chosen, rejected, subset`` (and ``id``);
        a folder in the LLMBar layout is read with :func:`load_llmbar`. None: the hub dataset.
    split: hub split (``filtered`` is the one the leaderboard scores).
    subsets: keep only these subset names (unknown names are an error, so typos do not
        silently produce an empty benchmark).
    """
    if data_files is None:
        pairs = _from_hub(split)
    else:
        files = [data_files] if isinstance(data_files, (str, Path)) else list(data_files)
        pairs = []
        for item in files:
            path = Path(item)
            if path.is_dir():
                pairs.extend(load_llmbar(path))
            else:
                rows = [(_pair(row, f"{path}: line {n}", f"{path.stem}-{n}"), f"{path}: line {n}") for n, row in read_rows(path)]
                check_unique((pair.id, where) for pair, where in rows)
                pairs.extend(pair for pair, _ in rows)
        if not pairs:
            raise InputError(f"{', '.join(map(str, files))}: no RewardBench rows found")
    return _select(pairs, subsets)


def _from_hub(split: str) -> list[Pair]:
    from st_eval.hub import load_hub_split

    dataset = load_hub_split(HUB_DATASET, split)
    return [_pair(row, f"{HUB_DATASET}[{split}] row {i}", str(i)) for i, row in enumerate(dataset)]


def _pair(row: dict[str, Any], where: str, default_id: str) -> Pair:
    """One RewardBench row as a pair: chosen is A, so the label is always A."""
    for field in _FIELDS:
        if not isinstance(row.get(field), str):
            hint = (
                "; this row is in LLMBar's layout (input, output_1, output_2, label): give the folder of the LLMBar "
                f"release files (natural.json, adversarial_*.json), or files in RewardBench's schema ({', '.join(_FIELDS)})"
                if {"input", "output_1", "output_2"} <= set(row) else ""
            )
            raise InputError(f"{where}: field {field!r} is missing or not a string{hint}")
    metadata = {k: v for k, v in row.items() if k not in (*_FIELDS, "id")}
    metadata["subset"] = row["subset"]
    return Pair(
        id=row_id(row, where, default_id),
        conversation=[Message("user", row["prompt"])],
        response_a=row["chosen"],
        response_b=row["rejected"],
        label="A",
        metadata=metadata,
    )


def load_llmbar(folder: str | Path) -> list[Pair]:
    """The five LLMBar sets of RewardBench's Chat Hard section, from the LLMBar release files.

    Each file is a JSON list of ``{input, output_1, output_2, label}`` (label 1 or 2 names the
    better output). The better output becomes ``response_a`` (label ``A``), as in RewardBench.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: LLMBar folder not found")
    missing = [name for name in LLMBAR_FILES if not (folder / name).exists()]
    if len(missing) == len(LLMBAR_FILES):
        raise InputError(f"{folder}: no LLMBar files ({', '.join(LLMBAR_FILES)})")
    pairs = []
    for name, subset in LLMBAR_FILES.items():
        path = folder / name
        if not path.exists():
            continue
        for number, row in read_rows(path):
            where = f"{path}: item {number}"
            for field in ("input", "output_1", "output_2"):
                if not isinstance(row.get(field), str):
                    raise InputError(f"{where}: field {field!r} is missing or not a string")
            if row.get("label") not in (1, 2):
                raise InputError(f"{where}: field 'label' must be 1 or 2, got {row.get('label')!r}")
            better, worse = ("output_1", "output_2") if row["label"] == 1 else ("output_2", "output_1")
            pairs.append(
                Pair(
                    id=f"{subset}-{number}",
                    conversation=[Message("user", row["input"])],
                    response_a=row[better],
                    response_b=row[worse],
                    label="A",
                    metadata={"subset": subset},
                )
            )
    return pairs


def _select(pairs: list[Pair], subsets: Iterable[str] | None) -> list[Pair]:
    if subsets is None:
        return pairs
    wanted = set(subsets)
    present = {p.metadata["subset"] for p in pairs}
    unknown = wanted - present
    if unknown:
        raise InputError(
            f"subsets not in the data: {', '.join(sorted(unknown))}; present: {', '.join(sorted(present))}"
        )
    return [p for p in pairs if p.metadata["subset"] in wanted]


def section_of(subset: str) -> str | None:
    """The leaderboard section a subset belongs to (None for subsets outside the four)."""
    return next((name for name, members in SECTIONS.items() if subset in members), None)


def pair_score(verdict: Verdict | str | None, label: Verdict | str | None = "A") -> float:
    """RewardBench's generative score for one judged order: 1 right, 0 wrong, 0.5 tie or unparseable."""
    if verdict in ("A", "B"):
        return 1.0 if verdict == label else 0.0
    return 0.5


def score_rewardbench(rows: Iterable[tuple[str, float]]) -> dict[str, Any]:
    """Official RewardBench figures from ``(subset, score)`` rows (score 1, 0 or 0.5).

    Returns ``subsets`` (accuracy and n per subset), ``sections`` (official-count-weighted mean
    of the subsets present), ``headline`` (plain mean of the sections present, None if none),
    ``missing_sections`` (sections with no subset in the data: the headline then is not
    comparable to the leaderboard), ``partial_sections`` (section -> its subsets absent from the
    data) and ``other_subsets`` (subsets outside the four sections, reported but not weighted).
    """
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # type: ignore[arg-type]
    for subset, score in rows:
        totals[subset][0] += float(score)
        totals[subset][1] += 1
    per_subset = {name: {"accuracy": total / n, "n": int(n)} for name, (total, n) in sorted(totals.items())}
    sections: dict[str, float] = {}
    partial: dict[str, list[str]] = {}
    for section, members in SECTIONS.items():
        present = [m for m in members if m in per_subset]
        if not present:
            continue
        weight = sum(EXAMPLE_COUNTS[m] for m in present)
        sections[section] = sum(per_subset[m]["accuracy"] * EXAMPLE_COUNTS[m] for m in present) / weight
        if len(present) < len(members):
            partial[section] = [m for m in members if m not in per_subset]
    return {
        "subsets": per_subset,
        "sections": sections,
        "headline": sum(sections.values()) / len(sections) if sections else None,
        "missing_sections": [s for s in SECTIONS if s not in sections],
        "partial_sections": partial,
        "other_subsets": [s for s in per_subset if section_of(s) is None],
    }


def score_both_orders(judged: Iterable[tuple[str, Verdict | None, Sequence[tuple[str, Verdict | None]]]]) -> dict[str, Any]:
    """Figures for judging every pair in both orders (NOT the official RewardBench number).

    judged: ``(subset, label, [(order, verdict in the pair's labels), ...])`` per pair.
    Returns accuracy per order, position-consistent accuracy (right in both orders), the share
    of orders with no parseable verdict, the same per subset, and ``order_averaged``: the
    official scoring applied to the mean of the two orders' scores, i.e. the expected value of
    the official one-random-order score.
    """
    per_order: dict[str, list[float]] = defaultdict(list)
    by_subset: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    consistent: list[float] = []
    invalid: list[float] = []
    averaged: list[tuple[str, float]] = []
    for subset, label, orders in judged:
        scores = []
        for order, verdict in orders:
            right = float(verdict is not None and verdict == label)
            per_order[order].append(right)
            by_subset[subset][order].append(right)
            invalid.append(float(verdict is None))
            scores.append(pair_score(verdict, label))
        both_right = float(len(orders) == 2 and all(v == label for _, v in orders))
        consistent.append(both_right)
        by_subset[subset]["consistent"].append(both_right)
        averaged.append((subset, sum(scores) / len(scores)))
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "note": "both-orders figures: not the official RewardBench score (that judges one random order per pair)",
        "n": len(consistent),
        "accuracy_per_order": {k: mean(v) for k, v in sorted(per_order.items())},
        "consistent_accuracy": mean(consistent),
        "invalid_rate": mean(invalid),
        "subsets": {
            name: {key: mean(vals) for key, vals in sorted(values.items())} | {"n": len(values["consistent"])}
            for name, values in sorted(by_subset.items())
        },
        "order_averaged": score_rewardbench(averaged),
    }


__all__ = [
    "EXAMPLE_COUNTS",
    "LLMBAR_FILES",
    "SECTIONS",
    "load_llmbar",
    "load_rewardbench",
    "pair_score",
    "score_both_orders",
    "score_rewardbench",
    "section_of",
]

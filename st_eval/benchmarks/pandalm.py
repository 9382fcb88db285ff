"""PandaLM's human-annotated test set (Wang et al. 2023): loading and scoring.

Each row of the release (``testset-v1.json``, or its development half) holds an instruction
(Self-Instruct's user-oriented requests), an optional input, two answers of 7B models and three
annotators' labels: 1 or 2 (the better answer) or 0 (a tie). The gold label is the majority of
the three; a row without a majority is left out (counted). As the PandaLM paper scores judges:

* ``binary``: accuracy on the rows whose gold is not a tie (chance 0.5), here in both orders
  (order-averaged, and right in both orders), with 95% bootstrap intervals;
* ``three_way``: accuracy against the gold over every row with a majority, ties included
  (a judge's ``tie`` verdict is right only on a tied row);
* beside the judge, the trivial rule "the longer answer is better" on the same non-tie rows
  (``judge_figures``' ``longer_wins``), since PandaLM's better answers are longer two times in three.

Rows are loaded with ``response1`` as answer A; the runner shows both orders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.pair_files import parse_json, read_text
from st_eval.records import Judgment, Message, Pair, Verdict

#: the release's file names, looked up in a folder
FILES = ("testset-v1-dev.json", "testset-v1.json")
SUBSET = "pandalm"
#: Published judges' binary accuracy (one order, non-tie gold) on the 487 non-tie rows of the
#: development half (``testset-v1-dev.json``), read from the PandaLM release's prediction files.
PUBLISHED_DEV = {"gpt-3.5-turbo": 0.772, "PandaLM-7B": 0.729}
DEV_NON_TIE_ROWS = 487
_GOLD: dict[int, Verdict] = {1: "A", 2: "B", 0: "tie"}


def gold_label(labels: Sequence[int]) -> Verdict | None:
    """The majority of the annotators' labels (1 -> A, 2 -> B, 0 -> tie); None without a majority."""
    value, count = Counter(labels).most_common(1)[0]
    return _GOLD[value] if count * 2 > len(labels) else None


def find_file(path: str | Path) -> Path:
    """A PandaLM JSON file, or the first of the release's file names inside a folder."""
    path = Path(path)
    if path.is_dir():
        for name in FILES:
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: no PandaLM file in this folder (expected one of {', '.join(FILES)})")
    if not path.is_file():
        raise InputError(f"{path}: PandaLM file not found")
    return path


def load_pandalm(path: str | Path) -> tuple[list[Pair], dict[str, int]]:
    """Pairs with a majority gold label (``label`` A, B or tie), and counts of what was read."""
    file = find_file(path)
    rows = parse_json(read_text(file), str(file))
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{file}: a PandaLM file holds a non-empty JSON list of rows")
    pairs: list[Pair] = []
    counts = {"rows": len(rows), "no_majority": 0}
    for number, row in enumerate(rows, start=1):
        where = f"{file}: item {number}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected an object, got {type(row).__name__}")
        for key in ("instruction", "response1", "response2"):
            if not isinstance(row.get(key), str):
                raise InputError(f"{where}: field {key!r} is missing or not a string")
        if row.get("input") is not None and not isinstance(row["input"], str):
            raise InputError(f"{where}: field 'input' must be a string or null")
        labels = []
        for key in ("annotator1", "annotator2", "annotator3"):
            if row.get(key) not in (0, 1, 2):
                raise InputError(f"{where}: field {key!r} must be 0, 1 or 2, got {row.get(key)!r}")
            labels.append(row[key])
        label = gold_label(labels)
        if label is None:
            counts["no_majority"] += 1
            continue
        request = row["instruction"].strip()
        if (row.get("input") or "").strip():
            request += "\n\n" + row["input"].strip()  # as Self-Instruct's requests read
        pairs.append(
            Pair(
                id=f"pandalm-{row.get('idx', number)}",
                conversation=[Message("user", request)],
                response_a=row["response1"],
                response_b=row["response2"],
                label=label,
                metadata={"subset": SUBSET, "cmp_key": row.get("cmp_key"), "motivation_app": row.get("motivation_app"), "annotators": labels},
            )
        )
    counts["pairs"] = len(pairs)
    counts["ties"] = sum(p.label == "tie" for p in pairs)
    counts["non_tie"] = counts["pairs"] - counts["ties"]
    return pairs, counts


def non_tie(pairs: Iterable[Pair]) -> list[Pair]:
    """The pairs whose gold names a better answer: the binary task."""
    return [p for p in pairs if p.label in ("A", "B")]


def three_way(pairs: Sequence[Pair], judgments: Sequence[Judgment]) -> dict[str, Any]:
    """Accuracy against the gold with ties (each order scored, averaged), and the judge's tie rate."""
    scores, ties = [], 0
    for pair, judgment in zip(pairs, judgments):
        verdicts = [r.verdict for r in judgment.orders]
        scores.append(sum(v == pair.label for v in verdicts) / len(verdicts))
        ties += sum(v == "tie" for v in verdicts)
    orders = sum(len(j.orders) for j in judgments)
    return {"n": len(scores), "accuracy": sum(scores) / len(scores) if scores else None, "judge_tie_rate": ties / orders if orders else None}


def published_for(pairs: Sequence[Pair]) -> dict[str, float] | None:
    """The published judges' figures when ``pairs`` are the development half's non-tie rows."""
    return dict(PUBLISHED_DEV) if len(non_tie(pairs)) == DEV_NON_TIE_ROWS else None


__all__ = ["DEV_NON_TIE_ROWS", "PUBLISHED_DEV", "SUBSET", "gold_label", "load_pandalm", "non_tie", "published_for", "three_way"]

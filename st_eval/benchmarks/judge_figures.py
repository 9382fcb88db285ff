"""Both-orders figures of one judge per subset, with intervals, and paired gains against another.

What a sceptic asks of a judge figure: how many pairs, what chance is, how sure we are, and
whether it depends on the order the answers were shown in. For each subset and overall:

* ``order_averaged``: each order scored as RewardBench scores a generative judge (1 right,
  0 wrong, 0.5 tie or no verdict), averaged over the two orders (chance 0.5);
* ``consistent``: right in both orders (chance 0.25 for a judge that guesses per order);
* ``invalid_rate`` (orders with no verdict), ``forced_rate`` (verdicts the verdict step wrote),
  ``shortened_rate`` (pairs the judge read shortened);
* length: ``prefers_longer`` (share of A/B verdicts that pick the longer answer) and the
  order-averaged accuracy where the better answer is the longer one and where it is the shorter
  one: a judge that only likes short (or long) answers shows it here, whatever its accuracy;
  ``longer_wins``: the accuracy of the trivial rule "the longer answer wins" on the same pairs;
* a 95% percentile bootstrap interval for the two accuracies.

Against a baseline judge's report on the same pairs, each gets the paired bootstrap interval
of the gain and, for ``consistent`` (right/wrong per pair), the exact McNemar p.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from st_eval.benchmarks.rewardbench import pair_score
from st_eval.errors import InputError
from st_eval.records import Judgment, Pair
from st_eval.significance import bootstrap_mean, paired_comparison

ALL = "all"
CHANCE = {"order_averaged": 0.5, "consistent": 0.25}


def outcome_counts(judgment: Judgment) -> dict[str, Any]:
    """What a judgment says about how well the judge answered at all: verdict per order, orders
    without a verdict, samples the verdict step wrote, whether it read the pair shortened."""
    return {
        "orders": {r.order: r.verdict for r in judgment.orders},
        "invalid_orders": sum(r.verdict is None for r in judgment.orders),
        "forced": sum(r.forced for r in judgment.orders),
        "samples": sum(sum(r.votes.values()) for r in judgment.orders),
        "shortened": judgment.shortened,
    }


def pair_row(pair: Pair, judgment: Judgment) -> dict[str, Any]:
    """One judged pair as a report row: verdict per order and the pair's scores."""
    scores = [pair_score(r.verdict, pair.label) for r in judgment.orders]
    lengths = {"A": len(pair.response_a), "B": len(pair.response_b)}
    longer = None if lengths["A"] == lengths["B"] else max(lengths, key=lengths.__getitem__)
    return {
        "id": pair.id,
        "subset": pair.metadata.get("subset", ALL),
        "score": sum(scores) / len(scores),
        "consistent": int(all(r.verdict == pair.label for r in judgment.orders)),
        **outcome_counts(judgment),
        "ratings": judgment.ratings,
        "longer": longer,
        "label": pair.label,
    }


def rates(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Over rows carrying :func:`outcome_counts`: ``invalid_rate`` (orders with no verdict),
    ``forced_rate`` (samples the verdict step wrote), ``shortened_rate`` (pairs read shortened)."""
    orders = sum(len(r["orders"]) for r in rows)
    samples = sum(r.get("samples", len(r["orders"])) for r in rows)
    return {
        "invalid_rate": sum(r["invalid_orders"] for r in rows) / orders if orders else 0.0,
        "forced_rate": sum(r.get("forced", 0) for r in rows) / samples if samples else 0.0,
        "shortened_rate": sum(bool(r.get("shortened")) for r in rows) / len(rows) if rows else 0.0,
    }


def figures(rows: Sequence[dict[str, Any]], *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per subset and ``all``: n, both accuracies with bootstrap intervals, chance, rates."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["subset"], []).append(row)
    if len(groups) > 1 or ALL not in groups:
        groups = {**dict(sorted(groups.items())), ALL: list(rows)}
    return {name: _group(members, seed) for name, members in groups.items()}


def _group(rows: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    n = len(rows)
    result: dict[str, Any] = {"n": n}
    for key, column in (("order_averaged", "score"), ("consistent", "consistent")):
        values = [float(r[column]) for r in rows]
        ci = bootstrap_mean(values, seed=seed)
        result[key] = sum(values) / n
        result[f"{key}_ci"] = {"low": ci.low, "high": ci.high}
        result[f"{key}_chance"] = CHANCE[key]
    result.update(rates(rows))
    picks = [v == r["longer"] for r in rows if r.get("longer") for v in r["orders"].values() if v in ("A", "B")]
    result["prefers_longer"] = sum(picks) / len(picks) if picks else None
    for name, wanted in (("better_is_longer", True), ("better_is_shorter", False)):
        members = [r for r in rows if r.get("longer") and (r["longer"] == r.get("label")) == wanted]
        result[name] = {"n": len(members), "order_averaged": sum(r["score"] for r in members) / len(members) if members else None}
    # the trivial baseline on the same pairs: the longer answer wins (equal lengths score 0.5)
    result["longer_wins"] = sum(0.5 if not r.get("longer") else float(r["longer"] == r.get("label")) for r in rows) / n
    return result


def load_baseline(path: Path) -> dict[str, Any]:
    """A previous ``--report-json`` of ``st-eval bench rewardbench --mode both-orders``."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the baseline report: {exc}") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    rows = report.get("rows") if isinstance(report, dict) else None
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: field 'rows' is missing or empty: pass a --report-json written by st-eval bench")
    for number, row in enumerate(rows, start=1):
        for key in ("id", "score", "consistent"):
            if not isinstance(row, dict) or key not in row:
                raise InputError(f"{path}: rows[{number}]: field {key!r} is missing (a both-orders report is needed)")
    return report


def compare(baseline_rows: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], *, where: str, seed: int = 0) -> dict[str, Any]:
    """Paired gains of ``rows`` over ``baseline_rows`` per subset and ``all``, on the same pair ids."""
    base = {r["id"]: r for r in baseline_rows}
    missing = [r["id"] for r in rows if r["id"] not in base]
    if missing:
        raise InputError(
            f"{where}: the baseline report has no row for {len(missing)} of these pairs (first: {missing[0]!r}); "
            "compare judges on the same pairs (same data, subsets and --limit)"
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["subset"], []).append(row)
    if len(groups) > 1 or ALL not in groups:
        groups = {**dict(sorted(groups.items())), ALL: list(rows)}
    result = {}
    for name, members in groups.items():
        result[name] = {
            key: paired_comparison([float(base[r["id"]][key]) for r in members], [float(r[key]) for r in members], seed=seed).to_dict()
            for key in ("score", "consistent")
        }
        result[name]["order_averaged"] = result[name].pop("score")
    return result


__all__ = ["ALL", "CHANCE", "compare", "figures", "load_baseline", "outcome_counts", "pair_row", "rates"]

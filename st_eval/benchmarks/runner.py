"""Running a judge over benchmark pairs: presentation orders, resumable output, per-pair rows.

Official RewardBench mode shows each pair in ONE order chosen at random; the choice is a pure
function of ``(seed, pair id)`` (:func:`official_order`), so it does not depend on ``--limit``,
on resuming, or on the order pairs arrive in, and it is recorded in every judgment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from st_eval.errors import InputError
from st_eval.jsonl import JsonlAppender, read_jsonl
from st_eval.judge import Judge
from st_eval.progress import item_bar
from st_eval.records import Judgment, Order, Pair
from st_eval.resume import check_producer

Mode = Literal["official", "both-orders"]
MODES: tuple[str, ...] = ("official", "both-orders")


def official_order(pair_id: str, seed: int) -> Order:
    """The one order a pair is shown in under official mode: a seeded coin flip per pair id."""
    digest = hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()
    return "swapped" if digest[0] & 1 else "given"


def planned_orders(pair: Pair, mode: str, seed: int) -> tuple[Order, ...]:
    """Orders a pair is judged in: one random order (official) or both."""
    if mode == "official":
        return (official_order(pair.id, seed),)
    if mode == "both-orders":
        return ("given", "swapped")
    raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")


def run_benchmark(
    judge: Judge,
    pairs: Sequence[Pair],
    *,
    mode: str,
    seed: int = 0,
    output: Path | None = None,
    progress: bool = True,
) -> list[Judgment]:
    """Judge every pair in its planned orders; returns judgments in input order.

    With ``output``, each finished judgment is appended at once and a rerun skips the pairs
    already there (they must have been judged by the same producer, ``Judge.producer``, in the
    same orders, else the file belongs to a different run and this is an error rather than a
    silent mix).
    """
    plans = {p.id: planned_orders(p, mode, seed) for p in pairs}
    done = _resume(output, plans, judge.producer())
    todo = [p for p in pairs if p.id not in done]
    groups: dict[tuple[Order, ...], list[Pair]] = {}
    for pair in todo:
        groups.setdefault(plans[pair.id], []).append(pair)
    order_modes = {("given",): "given", ("swapped",): "swapped", ("given", "swapped"): "both"}
    results = dict(done)
    appender = JsonlAppender(output) if output else None
    bar = item_bar(len(todo), "judging", "pair", disable=not progress)
    try:
        for orders, group in groups.items():
            for judgment in judge.with_config(order=order_modes[orders]).iter_judgments(group, bar=bar):
                results[judgment.pair_id] = judgment
                if appender:
                    appender.append(judgment.to_dict())
    finally:
        bar.close()
        if appender:
            appender.close()
    return [results[p.id] for p in pairs]


def _resume(output: Path | None, plans: dict[str, tuple[Order, ...]], producer: dict[str, Any]) -> dict[str, Judgment]:
    found: dict[str, Judgment] = {}
    if output is None:
        return found
    for number, row in enumerate(read_jsonl(output), start=1):
        pair_id = row.get("pair_id")
        if pair_id not in plans:
            continue
        check_producer(output, number, row, producer)
        judgment = Judgment.from_dict(row)
        orders = tuple(r.order for r in judgment.orders)
        if orders != plans[pair_id]:
            raise InputError(
                f"{output}: line {number}: field 'orders': pair {pair_id!r} was judged in {orders}, this run "
                f"needs {plans[pair_id]} (another --mode or --seed); use --overwrite to start over, or another --output"
            )
        found[pair_id] = judgment
    return found


__all__ = ["MODES", "official_order", "planned_orders", "run_benchmark"]

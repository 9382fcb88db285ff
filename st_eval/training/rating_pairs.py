"""Stage 4 for rating and choice judges: which synthetic pairs an iteration trains on.

The paper's stage 4 samples reasoned judgments and keeps those that name the known winner; its
purpose is to turn a known winner into training targets the judge can learn from. A rating
judge's target is the winner itself (rate it above the loser: ``reward.py``), so there is
nothing to sample and every pair is used: the first iteration trains on every source's pairs
(of the ``neighbour`` source, each instruction's ``synthesis.neighbours`` nearest).

Later iterations let the current judge choose (``annotation.hard_negatives``): it rates each
training instruction's candidate pairs (its ``hard_negatives`` nearest neighbours' answers and
every other source's losers) and the iteration trains on the ``synthesis.neighbours`` pairs that
the judge rates closest to (or above) the winner: the pairs it still finds hard, a curriculum
chosen by the judge itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from st_eval.engines import Engine
from st_eval.judge import Judge, JudgeConfig
from st_eval.prompt import JudgeTemplate
from st_eval.records import Pair
from st_eval.training.artifacts import resumable_chunks


def winner_side(pair: Pair) -> str:
    return pair.label or "A"


def preference_row(pair: Pair, template: JudgeTemplate) -> dict[str, Any]:
    """The two prompts of a pair whose verdict log-odds training orders (``reward.py``): a rating
    template's winner's prompt (``chosen``) and loser's (``rejected``); a choice template's pair
    shown with the winner first (``chosen``) and with the winner second (``rejected``), so the
    objective is the order-averaged log-odds the judge decides by, in which a position
    preference cancels."""
    win = winner_side(pair)
    lose = "B" if win == "A" else "A"
    if template.is_choice:
        winner_first = pair if win == "A" else pair.swapped()
        return {"pair_id": pair.id, "chosen": template.render(winner_first), "rejected": template.render(winner_first.swapped())}
    return {"pair_id": pair.id, "chosen": template.render_rating(pair, win), "rejected": template.render_rating(pair, lose)}


def nearest_pairs(pairs: Sequence[Pair], per_instruction: int) -> list[Pair]:
    """Each instruction's ``per_instruction`` pairs with the most similar neighbours."""
    return [p for p in pairs if p.metadata.get("rank", 0) < per_instruction]


def hardest_pairs(
    pairs: Sequence[Pair], engine: Engine, template_name: str, *, per_instruction: int, candidates: int,
    partial: Path, batch: int, desc: str,
) -> tuple[list[Pair], dict[str, Any]]:
    """Each instruction's ``per_instruction`` candidate pairs with the smallest rating margin
    (winner minus loser) under the judge on ``engine``; ties go to the nearer neighbour."""
    pool = [p for p in pairs if p.metadata.get("rank", 0) < candidates]
    judge = Judge(engine, JudgeConfig(template=template_name))

    def work(chunk: list[Pair]) -> list[dict[str, Any]]:
        rows = []
        for pair, judgment in zip(chunk, judge.judge(chunk, chunk_size=len(chunk))):
            ratings = judgment.ratings or {}
            win, lose = ratings.get(winner_side(pair)), ratings.get("B" if winner_side(pair) == "A" else "A")
            margin = None if win is None or lose is None else win - lose
            rows.append({"key": pair.id, "margin": margin})
        return rows

    rows = {r["key"]: r["margin"] for r in resumable_chunks(pool, lambda p: p.id, work, partial, chunk_size=batch, desc=desc)}
    groups: dict[str, list[Pair]] = defaultdict(list)
    for pair in pool:
        groups[pair.metadata.get("instruction_id", pair.id)].append(pair)
    chosen: list[Pair] = []
    for members in groups.values():
        rated = [p for p in members if rows[p.id] is not None]
        rated.sort(key=lambda p: (rows[p.id], p.metadata.get("rank", 0)))
        chosen.extend(rated[:per_instruction])
    margins = [m for m in rows.values() if m is not None]
    stats = {
        "candidates": len(pool),
        "instructions": len(groups),
        "invalid_ratings": len(rows) - len(margins),
        "candidates_ranked_wrong": sum(m <= 0 for m in margins),
        "chosen": len(chosen),
        "chosen_ranked_wrong": sum(rows[p.id] <= 0 for p in chosen),
        "mean_margin_candidates": sum(margins) / len(margins) if margins else None,
        "mean_margin_chosen": sum(rows[p.id] for p in chosen) / len(chosen) if chosen else None,
    }
    return chosen, stats

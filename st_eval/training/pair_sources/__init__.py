"""Stage 3 for answered instructions: label-free contrasting pairs from several sources.

Every source takes instructions that have an answer (a human one, or one the generator wrote)
and makes pairs whose winner is known by construction: the instruction's own answer beats a
loser that the source made worse for *this* request. No human preference enters. What separates
real answers is of many kinds, so there are several sources, each one module behind one small
protocol (:class:`PairSource`, as the engines are behind ``Engine``):

* ``neighbour`` (``retrieval_neighbour.py``): the answer written for the nearest other request;
* ``degraded`` (``degraded.py``): a damaged copy of the answer: cut mid-sentence, a line
  repeated over and over, the request's input echoed back, an off-topic tail appended;
* ``term_swap`` (``term_swap.py``): the answer with the request's most specific term replaced by
  a neighbouring request's, i.e. a fluent answer to a similar but different request;
* ``weak_policy`` (``weak_policy.py``): the generator's own answer, sampled hot on a cut budget;
* ``assistant_style`` (``assistant_style.py``): the nearest request's answer, with the winner or
  the loser (at random) dressed in an assistant's framing, so polish alone decides nothing;
* ``constraint`` (``constraint.py``): a constraint added to the request ("Answer in one
  sentence.") and the answer rewritten to meet it; the rewrite wins on that request and loses on
  the plain one, so only reading the request tells the two pairs apart.

A recipe mixes them (``synthesis.sources``): each source gives a pair to a seeded random
``share`` of the instructions, and ``synthesis.balance_cues`` subsamples the training pairs so
that neither length nor sharing the request's words tells the winner (:func:`cue_balanced`). Both sides of the held-out split get every source, and each pair
names its source as its ``subset``, so the held-out figures say what each source's pairs teach.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import re

from st_eval.engines import SamplingConfig
from st_eval.records import Message, Pair
from st_eval.training.instruction_pool import Instruction

_WORD = re.compile(r"[a-z]{3,}")
#: ``generate(prompts, sampling, tag)``: one output per prompt, resumable under ``tag``
Generate = Callable[[Sequence[list[dict[str, str]]], SamplingConfig, str], list[str]]


@dataclass
class Side:
    """The instructions one side of the held-out split makes pairs from.

    items: answered instructions of this side only (held-out pairs never borrow a training answer).
    neighbours: per item, the nearest other items of this side as ``(index, similarity)``,
        most similar first, near-duplicates left out (``retrieval_neighbour.nearest_neighbours``).
    name: ``train`` or ``heldout``; seed: the run's seed.
    generate: the generator model, for sources that write answers (None: not available).
    """

    items: Sequence[Instruction]
    neighbours: Sequence[Sequence[tuple[int, float]]]
    name: str
    seed: int
    generate: Generate | None = None


class PairSource(Protocol):
    """One way to make contrasting pairs; ``name`` is how recipes and reports call it."""

    name: str

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        """Pairs for the items at indices ``chosen`` of ``side`` (at most one pair each unless the
        source says otherwise), and counts of what it skipped and why."""
        ...


def contrast_pair(item: Instruction, winner: str, loser: str, source: str, extra: dict[str, Any], seed: int, pair_id: str) -> Pair:
    """A labelled pair on ``item``'s request; the winner's side is a seeded coin per pair id."""
    winner_first = random.Random(f"{seed}:{pair_id}").random() < 0.5
    a, b = (winner, loser) if winner_first else (loser, winner)
    return Pair(
        id=pair_id,
        conversation=[Message("user", item.text)],
        response_a=a,
        response_b=b,
        label="A" if winner_first else "B",
        metadata={"method": source, "subset": source, "source": item.source, "instruction_id": item.id, "rank": 0, **extra},
    )


def drawn(items: Sequence[Instruction], source: str, share: float, seed: int) -> list[int]:
    """Indices of the items that get a pair from ``source``: a seeded draw per item, so adding a
    source or changing another's share never changes which items this one picks."""
    return [i for i, item in enumerate(items) if random.Random(f"{seed}:{source}:{item.id}").random() < share]


def loser_of(pair: Pair) -> str:
    return pair.response_b if pair.label == "A" else pair.response_a


def winner_of(pair: Pair) -> str:
    return pair.response_a if pair.label == "A" else pair.response_b


def request_overlap(request: str, answer: str) -> float:
    """The share of the request's words (3+ letters, any case) that the answer uses."""
    asked = set(_WORD.findall(request.lower()))
    return len(asked & set(_WORD.findall(answer.lower()))) / len(asked) if asked else 0.0


def mix_stats(pairs: Sequence[Pair]) -> dict[str, dict[str, Any]]:
    """Per source: pairs, the shares whose loser is the longer answer and whose loser uses more
    of the request's words, and the mean log of the winner's length over the loser's. A judge
    learns any cue that separates winners from losers: a mixture near 0.5 on both shares leaves
    it neither length nor word overlap to go by (measured: pairs whose winner mostly
    out-overlaps the loser teach the embedded judge to pick the answer that repeats the
    request's words), unless the mean is far from 0 (the winner, when longer, longer by more)."""
    result: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        entry = result.setdefault(pair.metadata.get("method", "?"), {"pairs": 0, "loser_longer": 0, "loser_overlaps_more": 0, "log_ratio": 0.0})
        entry["pairs"] += 1
        entry["loser_longer"] += len(loser_of(pair)) > len(winner_of(pair))
        entry["log_ratio"] += log_length_ratio(pair)
        entry["loser_overlaps_more"] += request_overlap(pair.instruction, loser_of(pair)) > request_overlap(pair.instruction, winner_of(pair))
    for entry in result.values():
        entry["loser_longer_share"] = round(entry.pop("loser_longer") / entry["pairs"], 3)
        entry["loser_overlaps_more_share"] = round(entry.pop("loser_overlaps_more") / entry["pairs"], 3)
        entry["winner_log_length_ratio"] = round(entry.pop("log_ratio") / entry["pairs"], 3)
    return result


def log_length_ratio(pair: Pair) -> float:
    """``log(len(winner) / len(loser))`` in characters: > 0 where the winner is the longer one."""
    return math.log(max(len(winner_of(pair)), 1) / max(len(loser_of(pair)), 1))


def length_bin(pair: Pair, edges: Sequence[float]) -> int:
    """Which band of ``|log_length_ratio|`` the pair falls in: 0 below ``edges[0]``, 1 between
    ``edges[0]`` and ``edges[1]``, ... (no edges: one band)."""
    return sum(abs(log_length_ratio(pair)) >= edge for edge in edges)


def cue_balanced(pairs: Sequence[Pair], seed: int, length_bins: Sequence[float] = ()) -> list[Pair]:
    """The pairs, subsampled so that neither length nor word overlap with the request tells the winner.

    A judge learns any cue that separates its training winners from their losers. A request's
    own answer shares more of its words than most losers do (the neighbour's answer, the answer
    with its key term swapped), so a judge trained on such pairs learns to pick the answer that
    repeats the request (measured on LLMBar, where that rule is at chance, it costs the judge
    what it gains); and sources differ in which side is longer. So the pairs are sorted into
    cells by (is the loser longer?, which side shares more of the request's words: winner, loser
    or neither), and kept in equal numbers: per length class as many pairs whose winner shares
    more words as whose loser does, as many of those and of the ties in each length class as in
    the other. Each cell is sampled with the seed; the sources' order is kept.

    ``length_bins`` (edges of ``|log length ratio|``, :func:`length_bin`) balance the length cue
    within each band of how much longer one answer is, not only in sign: balanced in sign alone,
    the winner may still be the longer one mostly where the gap is large (a damaged copy cut to
    half its length), which teaches a judge that rates each answer alone to prefer long answers."""
    cells: dict[tuple[int, bool, int], list[Pair]] = {}
    for pair in pairs:
        lead = request_overlap(pair.instruction, winner_of(pair)) - request_overlap(pair.instruction, loser_of(pair))
        key = (length_bin(pair, length_bins), len(loser_of(pair)) > len(winner_of(pair)), (lead > 0) - (lead < 0))
        cells.setdefault(key, []).append(pair)

    def size(band: int, *leads: int) -> int:
        return min(len(cells.get((band, longer, lead), [])) for longer in (False, True) for lead in leads)

    decided = [size(band, 1, -1) for band in range(len(length_bins) + 1)]
    ties = [size(band, 0) for band in range(len(length_bins) + 1)]
    rng = random.Random(f"{seed}:cue_balanced")
    kept = [p for (band, _, lead), members in sorted(cells.items()) for p in rng.sample(members, ties[band] if lead == 0 else decided[band])]
    order = {id(p): i for i, p in enumerate(pairs)}
    return sorted(kept, key=lambda p: order[id(p)])


def make_source(spec: Any, neighbours_per_item: int) -> PairSource:
    """The source a recipe's ``synthesis.sources`` entry names."""
    from st_eval.training.pair_sources.assistant_style import AssistantStyleSource
    from st_eval.training.pair_sources.constraint import ConstraintSource
    from st_eval.training.pair_sources.degraded import DegradedSource
    from st_eval.training.pair_sources.term_swap import TermSwapSource
    from st_eval.training.pair_sources.weak_policy import WeakPolicySource
    from st_eval.training.retrieval_neighbour import NeighbourSource

    if spec.kind == "neighbour":
        return NeighbourSource(neighbours_per_item)
    if spec.kind == "degraded":
        return DegradedSource(tuple(spec.degradations) if spec.degradations else None, spec.count)
    if spec.kind == "term_swap":
        return TermSwapSource()
    if spec.kind == "assistant_style":
        return AssistantStyleSource()
    if spec.kind == "constraint":
        return ConstraintSource(tuple(spec.constraints) if spec.constraints else None, spec.mirror)
    return WeakPolicySource(spec.temperature, spec.max_new_tokens)


__all__ = ["Generate", "PairSource", "Side", "contrast_pair", "drawn", "length_bin", "log_length_ratio", "loser_of", "make_source", "mix_stats", "cue_balanced", "request_overlap", "winner_of"]

"""Pair source ``degraded``: the loser is a damaged copy of the request's own answer.

Weak models fail in recognisable ways, and people rate those answers lower: they stop
mid-sentence, loop on one line, hand the input back unchanged, or run on into text that
answers nothing that was asked. Each damage is applied to the answer the request came with, so
the loser is worse for this request by construction (no label), and it shares the winner's
topic, words and style: only the damage separates them.

* ``truncated``: the first 25-50% of the words, cut mid-sentence (answers of 12+ words);
* ``repeated``: one line (or sentence) repeated 3-6 times in place;
* ``echoed``: the request's input returned as the answer (the request itself when it has none);
* ``off_topic_tail``: the answer followed by the nearest other request's answer.

Two make the loser shorter and two longer, so length alone does not separate the pairs. Each
drawn request gets ``count`` different damages (default one), chosen at random (seeded per
request) among those that apply: one pair each.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from st_eval.records import Pair
from st_eval.training.instruction_pool import Instruction, normalize
from st_eval.training.pair_sources import Side, contrast_pair

NAME = "degraded"
DEGRADATIONS = ("truncated", "repeated", "echoed", "off_topic_tail")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def truncated(answer: str, rng: random.Random) -> str | None:
    """The first 25-50% of the words, never ending on a sentence end; None for short answers."""
    words = answer.split()
    if len(words) < 12:
        return None
    keep = max(3, int(len(words) * rng.uniform(0.25, 0.5)))
    while keep > 3 and words[keep - 1][-1:] in ".!?":
        keep -= 1
    return " ".join(words[:keep])


def repeated(answer: str, rng: random.Random) -> str | None:
    """One line (or, in a one-line answer, one sentence) repeated 3-6 times where it stands."""
    lines = answer.split("\n")
    joiner = "\n"
    if sum(bool(line.strip()) for line in lines) < 2:
        lines, joiner = _SENTENCE.split(answer.strip()), " "
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    if not candidates:
        return None
    at = rng.choice(candidates)
    times = rng.randint(3, 6)
    return joiner.join(lines[:at] + [lines[at]] * times + lines[at + 1 :])


def echoed(request: str, answer: str) -> str | None:
    """The request's input (the text after its first blank line), else the request, given back."""
    _, _, given = request.partition("\n\n")
    echo = given.strip() or request.strip()
    return None if normalize(echo) == normalize(answer) else echo


def off_topic_tail(answer: str, other: str | None) -> str | None:
    """The answer, then the nearest other request's answer, as if the model ran on."""
    if not other or normalize(other) in normalize(answer):
        return None
    return f"{answer.rstrip()}\n\n{other.strip()}"


class DegradedSource:
    """Damaged copies of each drawn request's answer (one damage per request)."""

    name = NAME

    def __init__(self, degradations: Sequence[str] | None = None, count: int = 1) -> None:
        self.degradations = tuple(degradations or DEGRADATIONS)
        self.count = count

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        pairs: list[Pair] = []
        stats: dict[str, int] = {"not_applicable": 0}
        for index in chosen:
            item = side.items[index]
            answer = item.answer or ""
            rng = random.Random(f"{side.seed}:{NAME}:{item.id}")
            options = [(kind, loser) for kind, loser in self._candidates(side, index, item, answer, rng) if loser and normalize(loser) != normalize(answer)]
            if not options:
                stats["not_applicable"] += 1
                continue
            for kind, loser in rng.sample(options, min(self.count, len(options))):
                stats[kind] = stats.get(kind, 0) + 1
                pairs.append(contrast_pair(item, answer, loser, NAME, {"degradation": kind}, side.seed, f"{item.id}~{NAME}-{kind}"))
        return pairs, stats

    def _candidates(self, side: Side, index: int, item: Instruction, answer: str, rng: random.Random) -> list[tuple[str, str | None]]:
        nearest = side.neighbours[index][0][0] if side.neighbours[index] else None
        makers = {
            "truncated": lambda: truncated(answer, random.Random(rng.random())),
            "repeated": lambda: repeated(answer, random.Random(rng.random())),
            "echoed": lambda: echoed(item.text, answer),
            "off_topic_tail": lambda: off_topic_tail(answer, side.items[nearest].answer if nearest is not None else None),
        }
        return [(kind, makers[kind]()) for kind in self.degradations]


__all__ = ["DEGRADATIONS", "DegradedSource", "echoed", "off_topic_tail", "repeated", "truncated"]

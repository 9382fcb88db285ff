"""Pair source ``assistant_style``: an answer's polish must not decide, what it answers must.

Chat models wrap what they say in an assistant's framing ("Sure! Here is ...", "I hope this
helps!"), often restating the request, and small judges learn to reward the framing itself: a
fluent, helpful-sounding answer that echoes the request's words beats a terse right one. Measured
on the embedded judge, every other source teaches exactly that shortcut, since a request's own
answer shares more of its words than the loser does. Human-written answers (the pool's) carry no
such framing, so no other source shows the judge a framed answer at all.

Here the loser is the nearest other request's answer (as in ``neighbour``), and one of the two
answers, the winner or the loser with equal chance, is dressed in a framing drawn from a fixed
list, half of them restating the request's first line. Over the source's pairs the framing (and
the request's words it brings) goes with the winner as often as with the loser, so it tells
nothing, and the judge can only learn which request each answer serves.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from st_eval.records import Pair
from st_eval.training.instruction_pool import normalize
from st_eval.training.pair_sources import Side, contrast_pair

NAME = "assistant_style"
OPENINGS = (
    "Sure! Here is what you asked for:\n\n",
    "Certainly, I'd be happy to help with that.\n\n",
    "Great question! ",
    "Of course. Here's my answer:\n\n",
    "Sure! Here is my answer to \"{request}\":\n\n",
    "Certainly! You asked: \"{request}\" Here is the response.\n\n",
    "Of course, I'd be happy to help with \"{request}\".\n\n",
)
CLOSINGS = (
    "",
    "\n\nI hope this helps! Let me know if you have any other questions.",
    "\n\nFeel free to ask if you need anything else.",
)


def dress(answer: str, request: str, rng: random.Random) -> str:
    """The answer inside an assistant's opening (perhaps restating the request's first line, up
    to 120 characters) and perhaps closing words."""
    first_line = request.strip().split("\n")[0][:120].strip()
    opening = rng.choice(OPENINGS).replace("{request}", first_line)
    return f"{opening}{answer.strip()}{rng.choice(CLOSINGS)}"


class AssistantStyleSource:
    """The nearest request's answer as loser; the winner or the loser, at random, dressed up."""

    name = NAME

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        pairs: list[Pair] = []
        stats = {"no_neighbour": 0, "winner_dressed": 0, "loser_dressed": 0}
        for index in chosen:
            item = side.items[index]
            nearest = next(
                (side.items[j] for j, _ in side.neighbours[index] if normalize(side.items[j].answer or "") != normalize(item.answer or "")),
                None,
            )
            if nearest is None:
                stats["no_neighbour"] += 1
                continue
            rng = random.Random(f"{side.seed}:{NAME}:{item.id}")
            winner, loser = item.answer or "", nearest.answer or ""
            dressed = "winner" if rng.random() < 0.5 else "loser"
            if dressed == "winner":
                winner = dress(winner, item.text, rng)
            else:
                loser = dress(loser, item.text, rng)
            stats[f"{dressed}_dressed"] += 1
            extra = {"neighbour": nearest.id, "dressed": dressed}
            pairs.append(contrast_pair(item, winner, loser, NAME, extra, side.seed, f"{item.id}~{NAME}"))
        return pairs, stats


__all__ = ["CLOSINGS", "OPENINGS", "AssistantStyleSource", "dress"]

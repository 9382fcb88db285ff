"""Pair source ``constraint``: the same two answers, whose winner flips with what the request asks.

A judge that rates answers without reading the request learns cues of the answers alone (the
longer, the more fluent, the more complete one wins), and those cues lose on requests that ask
for something specific. This source makes the request decide. A drawn request gets a stated
constraint appended (x': "Answer in one sentence.", "Use at most N words.", "Write the whole
answer in capital letters.", "... in lowercase letters only."), and the request's own answer is
rewritten to meet it by a rule (its first sentence; its leading sentences within N words; upper
or lower case). Two pairs follow, with the same two texts and opposite winners:

* on x', the rewritten answer beats the request's own answer, which ignores the constraint;
* on x (the ``mirror`` pair), the own answer beats the rewritten one, which is cut short or
  shouts where nothing asked for it.

Format constraints, opt-in (``constraints:`` names them; the default stays the four above, so a
recipe that names none makes the pairs it always made): "Answer as a numbered list" (the
answer's sentences numbered, one per line; its mirror states the opposite, "one paragraph of
prose", since a list is not worse where nothing was asked), "Give the answer as a JSON object"
(the answer wrapped as ``{"answer": ...}``) and "First repeat the request word for word" (the
plain request, then the answer).

No label enters: both winners follow from the rewrite. Length, fluency and word overlap with the
request are the same across the two pairs with the sides swapped, so only reading the request
tells them apart. Each drawn request gets one constraint among those that apply to its answer
(seeded per request), a length constraint where one applies.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from st_eval.records import Pair
from st_eval.training.instruction_pool import Instruction
from st_eval.training.pair_sources import Side, contrast_pair

NAME = "constraint"
#: what ``{kind: constraint}`` draws from when the recipe names none
DEFAULT_CONSTRAINTS = ("one_sentence", "word_limit", "uppercase", "lowercase")
FORMAT_CONSTRAINTS = ("numbered_list", "json_object", "repeat_request")
CONSTRAINTS = DEFAULT_CONSTRAINTS + FORMAT_CONSTRAINTS
LENGTH_CONSTRAINTS = ("one_sentence", "word_limit")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(answer: str) -> list[str]:
    """The sentences of a prose answer (its paragraphs run together); [] for lists, code, lines
    without a sentence end, or a sentence that introduces what follows: a rule cannot shorten
    those and keep them well formed."""
    text = answer.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if re.search(r"(^|\n)\s*([-*•]|\d+[.)])\s", text) or "```" in text or any(line[-1] not in ".!?\"')" for line in lines):
        return []
    parts = [part.strip() for part in _SENTENCE_END.split(" ".join(lines)) if part.strip()]
    if any(part.endswith(":") for part in parts):
        return []
    return parts


def one_sentence(answer: str) -> tuple[str, str] | None:
    """("Answer in one sentence.", the first sentence) for a prose answer of 2+ sentences whose
    first sentence has 5+ words and ends as a sentence does."""
    parts = sentences(answer)
    if len(parts) < 2 or len(parts[0].split()) < 5 or parts[0][-1] not in ".!?":
        return None
    return "Answer in one sentence.", parts[0]


def word_limit(answer: str) -> tuple[str, str] | None:
    """("Use at most N words.", the leading whole sentences within N words), N about half the
    answer's words rounded to 5; None unless at least one sentence fits and one is left out."""
    parts = sentences(answer)
    total = sum(len(part.split()) for part in parts)
    if len(parts) < 3 or total < 30:
        return None
    limit = max(10, 5 * round(total / 2 / 5))
    kept: list[str] = []
    words = 0
    for part in parts:
        words += len(part.split())
        if words > limit:
            break
        kept.append(part)
    if not kept or len(kept) == len(parts):
        return None
    return f"Use at most {limit} words.", " ".join(kept)


def uppercase(answer: str) -> tuple[str, str] | None:
    """("Write the whole answer in capital letters.", the answer upper-cased) where it has 10+
    lower-case letters."""
    if sum(c.islower() for c in answer) < 10:
        return None
    return "Write the whole answer in capital letters.", answer.upper()


def lowercase(answer: str) -> tuple[str, str] | None:
    """("Write the whole answer in lowercase letters only.", the answer lower-cased) where it has
    3+ capitals."""
    if sum(c.isupper() for c in answer) < 3:
        return None
    return "Write the whole answer in lowercase letters only.", answer.lower()


def numbered_list(answer: str) -> tuple[str, str] | None:
    """("Answer as a numbered list, one point per line.", the answer's sentences numbered) for a
    prose answer of 3+ sentences."""
    parts = sentences(answer)
    if len(parts) < 3:
        return None
    return "Answer as a numbered list, one point per line.", "\n".join(f"{i}. {part}" for i, part in enumerate(parts, 1))


def json_object(answer: str) -> tuple[str, str] | None:
    """("Give the answer as a JSON object of the form {"answer": "..."} and nothing else.", the
    answer so wrapped) for any non-empty answer."""
    if not answer:
        return None
    return 'Give the answer as a JSON object of the form {"answer": "..."} and nothing else.', json.dumps({"answer": answer}, ensure_ascii=False)


def repeat_request(answer: str, request: str) -> tuple[str, str] | None:
    """("First repeat the request word for word, then answer it.", the plain request, a blank
    line, the answer) for any non-empty answer to a non-empty request."""
    if not answer or not request.strip():
        return None
    return "First repeat the request word for word, then answer it.", f"{request.strip()}\n\n{answer}"


#: each constraint's rewrite of (answer, plain request)
REWRITES: dict[str, Callable[[str, str], tuple[str, str] | None]] = {
    "one_sentence": lambda answer, _: one_sentence(answer),
    "word_limit": lambda answer, _: word_limit(answer),
    "uppercase": lambda answer, _: uppercase(answer),
    "lowercase": lambda answer, _: lowercase(answer),
    "numbered_list": lambda answer, _: numbered_list(answer),
    "json_object": lambda answer, _: json_object(answer),
    "repeat_request": repeat_request,
}

#: the constraint the mirror pair states where the plain request would not make the own answer
#: the better one (a list is no worse than prose where nothing was asked)
OPPOSITES = {"numbered_list": "Answer in one paragraph of prose, without a list."}


def constrained(item: Instruction, constraint: str) -> Instruction:
    """The request with the constraint stated after it, as a user adds one (same id and source)."""
    return replace(item, text=f"{item.text.rstrip()}\n\n{constraint}")


class ConstraintSource:
    """Per drawn request, a stated constraint and the answer rewritten to meet it: two pairs with
    the same texts and opposite winners (on the constrained request and, ``mirror``, the plain one)."""

    name = NAME

    def __init__(self, constraints: Sequence[str] | None = None, mirror: bool = True) -> None:
        self.constraints = tuple(constraints or DEFAULT_CONSTRAINTS)
        self.mirror = mirror

    def pairs(self, side: Side, chosen: Sequence[int]) -> tuple[list[Pair], dict[str, int]]:
        pairs: list[Pair] = []
        stats: dict[str, int] = {"not_applicable": 0}
        for index in chosen:
            item = side.items[index]
            answer = (item.answer or "").strip()
            options = [(kind, made) for kind in self.constraints if (made := REWRITES[kind](answer, item.text)) and made[1].split() != answer.split()]
            if not options:
                stats["not_applicable"] += 1
                continue
            # a length constraint where one applies: a change of case applies to nearly every
            # answer and would crowd out the constraints that oppose the length cue
            lengths = [option for option in options if option[0] in LENGTH_CONSTRAINTS]
            kind, (constraint, rewritten) = random.Random(f"{side.seed}:{NAME}:{item.id}").choice(lengths or options)
            stats[kind] = stats.get(kind, 0) + 1
            extra = {"constraint": kind}
            pairs.append(contrast_pair(constrained(item, constraint), rewritten, answer, NAME, extra, side.seed, f"{item.id}~{NAME}-{kind}"))
            if self.mirror:
                mirrored = constrained(item, OPPOSITES[kind]) if kind in OPPOSITES else item
                pairs.append(contrast_pair(mirrored, answer, rewritten, NAME, {**extra, "mirror": True}, side.seed, f"{item.id}~{NAME}-{kind}-mirror"))
        return pairs, stats


__all__ = [
    "CONSTRAINTS", "DEFAULT_CONSTRAINTS", "FORMAT_CONSTRAINTS", "ConstraintSource", "constrained", "json_object", "lowercase",
    "numbered_list", "one_sentence", "repeat_request", "sentences", "uppercase", "word_limit",
]

"""The k-way judge: one prompt shows k answers (named ``[[A]]``..``[[D]]`` for k = 4), the judge
names the best.

Where the correct answer is shown matters (a judge may prefer a position), so benchmarks draw
it per item from ``(seed, item id)`` (:func:`drawn_position`: repeatable, independent of row
order, limits and resuming, recorded with every result) or show every position
(:func:`all_positions`) to measure position preference. The answers' arrangement follows
RewardBench 2's (:func:`arrangement`: the correct answer swaps places with the answer at the
drawn position). Samples are parsed by the one parser under the template's declared form
and voted by the same majority rule as pairwise verdicts; a vote split between letters names
no answer (``split``), like an unparseable output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.prompt import JudgeTemplate
from st_eval.voting import majority, tally


@dataclass(frozen=True)
class KWayVerdict:
    """The voted letter of one k-way prompt (None: no valid sample, or ``split``: letters tied
    for the most votes), with its samples."""

    verdict: str | None
    votes: dict[str, int]
    confidence: float
    raw: tuple[str, ...] = field(default_factory=tuple)
    split: bool = False

    @property
    def invalid(self) -> int:
        return self.votes.get("invalid", 0)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "votes": self.votes, "confidence": self.confidence, "split": self.split}


def drawn_position(item_id: str, seed: int, k: int) -> int:
    """Where (0..k-1) the correct answer of ``item_id`` is shown: uniform over positions and a
    pure function of ``(seed, item id)``, the scheme of ``runner.official_order``."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:8], "big") % k


def all_positions(k: int) -> list[int]:
    """Every position, for position figures."""
    return list(range(k))


def arrangement(correct: str, others: Sequence[str], position: int) -> list[str]:
    """The k answers in shown order: start from ``[correct, *others]`` and swap the correct
    answer with the one at ``position`` (RewardBench 2's shuffle; a swap, not an insertion)."""
    answers = [correct, *others]
    if not 0 <= position < len(answers):
        raise ValueError(f"position {position} outside 0..{len(answers) - 1}")
    answers[0], answers[position] = answers[position], answers[0]
    return answers


def kway_verdict(outputs: Sequence[str], template: JudgeTemplate) -> KWayVerdict:
    """Parse and vote one prompt's samples under ``template``'s declared letters and rule."""
    votes = tally([template.verdict.parse(text) for text in outputs])
    verdict, confidence = majority(votes)
    if verdict == "tie":
        return KWayVerdict(None, votes, 0.0, tuple(outputs), split=True)
    return KWayVerdict(verdict, votes, confidence, tuple(outputs))


def judge_kway(
    engine: Engine, prompts: Sequence[ChatPrompt], template: JudgeTemplate, samples: int, sampling: SamplingConfig
) -> list[KWayVerdict]:
    """Sample ``samples`` judgments of each k-way prompt in one engine call and vote them."""
    if not template.is_kway:
        raise ValueError(f"template {template.name!r} is of kind {template.kind!r}, not a k-way template")
    outputs = engine.generate(list(prompts), n=samples, sampling=sampling) if prompts else []
    return [kway_verdict(texts, template) for texts in outputs]


__all__ = ["KWayVerdict", "all_positions", "arrangement", "drawn_position", "judge_kway", "kway_verdict"]

"""Written ratings: the judge reads one answer, reasons, and writes a rating on a scale (1-10).

A ``score`` template asks for it; the one parser reads it (``verdict.parse_rating`` under the
template's declared form). Several samples of one rating are combined by their mean, with their
spread (population standard deviation) beside it; a sample without a parseable rating is
counted as invalid and left out of the mean, never guessed. With no valid sample there is no
rating.

Two ratings make a pairwise verdict the same way probability ratings do
(``rating.verdict_from_ratings``): the higher-rated answer wins, equal ratings tie.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.prompt import JudgeTemplate


@dataclass(frozen=True)
class WrittenRating:
    """One answer's rating from ``len(raw)`` samples: the parsed rating of each (None: invalid)."""

    ratings: tuple[int | None, ...]
    raw: tuple[str, ...]

    @property
    def valid(self) -> list[int]:
        return [r for r in self.ratings if r is not None]

    @property
    def mean(self) -> float | None:
        """Mean of the valid samples' ratings; None when no sample gave one."""
        return statistics.fmean(self.valid) if self.valid else None

    @property
    def spread(self) -> float | None:
        """Population standard deviation of the valid ratings (0 for one); None without any."""
        return statistics.pstdev(self.valid) if self.valid else None

    @property
    def invalid(self) -> int:
        return sum(r is None for r in self.ratings)

    def to_dict(self) -> dict:
        return {"rating": self.mean, "spread": self.spread, "samples": list(self.ratings), "invalid": self.invalid}


def written_rating(outputs: Sequence[str], template: JudgeTemplate) -> WrittenRating:
    """Parse one answer's sampled outputs under ``template``'s declared rating form."""
    return WrittenRating(tuple(template.verdict.parse_rating(text).rating for text in outputs), tuple(outputs))


def rate(
    engine: Engine, prompts: Sequence[ChatPrompt], template: JudgeTemplate, samples: int, sampling: SamplingConfig
) -> list[WrittenRating]:
    """Sample ``samples`` ratings for each prompt (one answer each) in one engine call."""
    if not template.is_score:
        raise ValueError(f"template {template.name!r} is of kind {template.kind!r}, not a written-rating ('score') template")
    outputs = engine.generate(list(prompts), n=samples, sampling=sampling) if prompts else []
    return [written_rating(texts, template) for texts in outputs]


__all__ = ["WrittenRating", "rate", "written_rating"]

"""A judge STAND-IN for fast gate tests: an Engine that answers from known answer qualities.

It is not a model. It reads the judge prompt, finds which known answer texts sit in the A block
and which in the B block, and names the block holding the better-scored answer. Equal scores
make it answer by position ([[A]]), which the gate must turn into a tie. Texts listed in
``unparseable`` make it answer without any verdict, to exercise the failure-rate limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig

_B_MARKERS = ("<answer_b>", "<conversation_b>")


class LabelledStandInEngine(Engine):
    """Judge stand-in: verdicts come from a table of answer text -> quality score."""

    name = "stand-in"

    def __init__(self, scores: dict[str, float], unparseable: Sequence[str] = (), crash_after: int | None = None) -> None:
        super().__init__("labelled-stand-in")
        self.scores = scores
        self.unparseable = set(unparseable)
        self.crash_after = crash_after
        self.prompts_seen = 0

    def generate(self, prompts: Sequence[ChatPrompt], n: int = 1, sampling: SamplingConfig | None = None) -> list[list[str]]:
        if self.crash_after is not None and self.prompts_seen + len(prompts) > self.crash_after:
            raise RuntimeError("stand-in engine crashed on purpose")
        self.prompts_seen += len(prompts)
        return [[self._answer(p[-1]["content"])] * n for p in prompts]

    def _answer(self, content: str) -> str:
        cut = min((content.find(m) for m in _B_MARKERS if m in content), default=len(content))
        block_a, block_b = content[:cut], content[cut:]
        if any(text in content for text in self.unparseable):
            return "I am not sure which one is better."
        score_a = max((s for t, s in self.scores.items() if t in block_a), default=0.0)
        score_b = max((s for t, s in self.scores.items() if t in block_b), default=0.0)
        if score_b > score_a:
            return "Answer B is better.\nFinal verdict: [[B]]"
        return "Answer A is better.\nFinal verdict: [[A]]"

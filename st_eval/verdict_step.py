"""The verdict step: two-step decoding for judges that reason but do not finish with a verdict.

Small judges (the embedded 135M one above all) often reason and then stop, run out of budget,
or write a malformed marker such as ``[A]``: the strict parser rightly calls those invalid, and
a self-taught loop seeded with such a judge keeps no judgment at all. With the verdict step, a
sample without a parseable verdict is continued from its own text followed by the verdict cue
(``Final verdict: [[``), and the judge writes only the letter. The completed text goes through
the same parser, so nothing is guessed: the judge still picks the letter. Every completed sample
is counted as *forced*, so reports show how often the judge needed the step; training on forced
judgments teaches the judge to write the verdict itself, which the forced rate then measures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from st_eval.engines.base import ChatPrompt, Engine, SamplingConfig
from st_eval.verdict import parse_verdict

#: what the judge is continued from; the templates ask for "Final verdict: [[A]]" on the last line
VERDICT_CUE = "Final verdict: [["
# a last line that already tries to give a verdict ("Final verdict: [A]") is replaced by the cue
_TRAILING_VERDICT_LINE = re.compile(r"(?:^|\n)[^\n]*\bverdict\b[^\n]*\s*$", re.IGNORECASE)


def continuation_prompt(prompt: ChatPrompt, text: str) -> ChatPrompt:
    """The judge prompt plus the sample's own text, ending at the verdict cue, to be continued."""
    reasoning = _TRAILING_VERDICT_LINE.sub("", text).rstrip()
    prefix = f"{reasoning}\n\n{VERDICT_CUE}" if reasoning else VERDICT_CUE
    return [*prompt, {"role": "assistant", "content": prefix}]


def complete_verdicts(
    engine: Engine,
    prompts: Sequence[ChatPrompt],
    outputs: list[list[str]],
    sampling: SamplingConfig,
    *,
    allow_tie: bool = False,
) -> tuple[list[list[str]], list[list[bool]]]:
    """Finish every sample that has no parseable verdict; return (texts, forced flags).

    The letter is drawn with the caller's temperature and top_p (so rejection sampling still
    sees varied verdicts) and a two-token budget that stops at ``]]``.
    """
    todo = [
        (i, s)
        for i, samples in enumerate(outputs)
        for s, text in enumerate(samples)
        if not parse_verdict(text, allow_tie=allow_tie).valid
    ]
    texts = [list(samples) for samples in outputs]
    forced = [[False] * len(samples) for samples in outputs]
    if not todo:
        return texts, forced
    continuations = [continuation_prompt(prompts[i], outputs[i][s]) for i, s in todo]
    letter_sampling = replace(sampling, max_new_tokens=2, stop=("]]",))
    letters = engine.generate(continuations, 1, letter_sampling)
    for (i, s), prompt, (letter,) in zip(todo, continuations, letters):
        texts[i][s] = f"{prompt[-1]['content']}{letter.strip()}]]"
        forced[i][s] = True
    return texts, forced


def sample_judgments(
    engine: Engine,
    prompts: Sequence[ChatPrompt],
    n: int,
    sampling: SamplingConfig,
    *,
    verdict_step: bool = False,
    allow_tie: bool = False,
) -> tuple[list[list[str]], list[list[bool]]]:
    """Draw ``n`` judge outputs per prompt, completed by the verdict step when it is on."""
    outputs = engine.generate(list(prompts), n, sampling)
    if verdict_step:
        return complete_verdicts(engine, prompts, outputs, sampling, allow_tie=allow_tie)
    return outputs, [[False] * len(samples) for samples in outputs]

"""The one verdict parser: reads ``[[A]]`` / ``[[B]]`` (``[[C]]`` = tie) from a judge's output,
``[[A]]``..``[[D]]`` from a k-way judge's, and a written rating (``... 7``) from a rating judge's.

A template declares the verdict form it asks for (``prompt.VerdictForm``): the letters it names
answers by, or the scale of its rating, and the rule that reads them. Rules for letters:

``last-line`` (st-eval's rule, the default), applied the same way everywhere (CLI, harness
plugins, gate, training):

1. Empty output is invalid (``empty``).
2. Markers inside fenced code blocks and block-quote lines (starting with ``>``) are ignored:
   they are the judge quoting material, not deciding.
3. A marker wrapped in quotes or backticks (``"[[A]]"``, `` `[[B]]` ``) is a mention and is
   ignored, unless its line also says "verdict" (``Final verdict: "[[A]]"`` is a decision).
4. Of the markers left, the **last line** that holds any decides. If that line holds two
   different markers (``[[A]] or [[B]]``) the output is invalid (``ambiguous``).
5. No marker left: invalid (``no_verdict``). ``[[C]]`` when ties are off: invalid (``tie_not_allowed``).

``first-listed`` (RewardBench's generative scripts, ``process_judgement``): the first letter, in
alphabetical order, whose exact marker appears anywhere in the output (an output naming
``[[B]]`` and then ``[[A]]`` reads as A). Templates that reproduce a published protocol declare it
so that their figures are the published protocol's.

Ratings (``trailing-integer``, RewardBench 2's ``get_single_rating``): a whole number on the
template's scale standing as its own word at the very end of the output (trailing whitespace
allowed); anything else, a trailing full stop included, is invalid.

Invalid outputs are kept and counted by the caller; they never become a verdict or a rating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from st_eval.records import Verdict

_MARKER = re.compile(r"\[\[\s*([A-Z])\s*\]\]", re.IGNORECASE)
#: letter rules: st-eval's, and the first-listed rule of RewardBench's generative scripts
LETTER_RULES = ("last-line", "first-listed")
PAIRWISE_LETTERS = "AB"
#: the marker letter a pairwise judge writes for a tie
TIE_LETTER = "C"
_FENCE = re.compile(r"```.*?(```|\Z)", re.DOTALL)
_OPEN_QUOTES = "\"'`“‘«"
_CLOSE_QUOTES = "\"'`”’»"


@dataclass(frozen=True)
class ParsedVerdict:
    """A parse result: ``verdict`` is None exactly when ``reason`` says why it is invalid."""

    verdict: Verdict | None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.verdict is not None


def parse_verdict(
    text: str | None, *, allow_tie: bool = False, letters: str = PAIRWISE_LETTERS, rule: str = "last-line"
) -> ParsedVerdict:
    """Parse one judge output under the module's documented rule.

    letters: the letters the judge names answers by (``AB`` pairwise; ``ABCD`` for a 4-way judge).
        Pairwise judges may also write ``[[C]]`` for a tie; for k-way judges C is an answer.
    rule: ``last-line`` or ``first-listed`` (see the module docstring).
    """
    if rule not in LETTER_RULES:
        raise ValueError(f"unknown verdict rule {rule!r}: use one of {', '.join(LETTER_RULES)}")
    if text is None or not text.strip():
        return ParsedVerdict(None, "empty")
    pairwise = letters == PAIRWISE_LETTERS
    accepted = letters + (TIE_LETTER if pairwise else "")
    if rule == "first-listed":
        found = next((letter for letter in letters + (TIE_LETTER if pairwise and allow_tie else "") if f"[[{letter}]]" in text), None)
        if found is None:
            return ParsedVerdict(None, "no_verdict")
        return ParsedVerdict("tie" if pairwise and found == TIE_LETTER else found)  # type: ignore[arg-type]
    unfenced = _FENCE.sub("", text)
    deciding_line: list[str] | None = None
    for line in unfenced.splitlines():
        if line.lstrip().startswith(">"):
            continue
        says_verdict = "verdict" in line.lower()
        found_letters = [
            m.group(1).upper()
            for m in _MARKER.finditer(line)
            if m.group(1).upper() in accepted and (says_verdict or not _is_quoted(line, m.start(), m.end()))
        ]
        if found_letters:
            deciding_line = found_letters
    if deciding_line is None:
        return ParsedVerdict(None, "no_verdict")
    if len(set(deciding_line)) > 1:
        return ParsedVerdict(None, "ambiguous")
    letter = deciding_line[-1]
    if pairwise and letter == TIE_LETTER:
        return ParsedVerdict("tie") if allow_tie else ParsedVerdict(None, "tie_not_allowed")
    return ParsedVerdict(letter)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ParsedRating:
    """A parsed written rating: ``rating`` is None exactly when ``reason`` says why it is invalid."""

    rating: int | None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.rating is not None


def parse_rating(text: str | None, scale: tuple[int, int] = (1, 10)) -> ParsedRating:
    """Read a rating on ``scale`` (inclusive) from the end of a judge's output (``trailing-integer``).

    The pattern lists the scale's numbers, largest first (``\\b(10|9|...|1)\\b\\s*$`` for 1-10),
    which reads exactly what RewardBench 2's ``\\b([1-9]|10)\\b\\s*$`` reads: "007" and "11"
    are no ratings, "3.5" ends in the rating 5.
    """
    if text is None or not text.strip():
        return ParsedRating(None, "empty")
    match = _rating_pattern(*scale).search(text.strip())
    return ParsedRating(int(match.group(1))) if match else ParsedRating(None, "no_rating")


@lru_cache(maxsize=8)
def _rating_pattern(low: int, high: int) -> re.Pattern[str]:
    numbers = "|".join(str(n) for n in range(high, low - 1, -1))
    return re.compile(rf"\b({numbers})\b\s*$")


def _is_quoted(line: str, start: int, end: int) -> bool:
    before = line[start - 1] if start > 0 else ""
    after = line[end] if end < len(line) else ""
    return bool(before and after) and before in _OPEN_QUOTES and after in _CLOSE_QUOTES


def asks_for_verdict(messages: list[dict[str, str]]) -> bool:
    """Whether a judge prompt asks for a ``[[X]]`` verdict.

    Material under judgment is defanged before it enters a prompt (``prompt.defang``), so any
    marker left in the messages comes from the template's own instructions.
    """
    return any(_MARKER.search(m.get("content", "")) for m in messages)


def verdict_written(text: str) -> bool:
    """Whether ``text`` ends with a complete decision: its last line says "verdict", holds a
    marker, and the parser above accepts it.

    Engines use this to stop generating once a judge has decided (the templates ask for the
    verdict on the last line), so the text after the verdict is never generated.
    """
    last = text.rstrip().rsplit("\n", 1)[-1]
    if "verdict" not in last.lower() or not _MARKER.search(last):
        return False
    return parse_verdict(text, allow_tie=True).valid


__all__ = [
    "LETTER_RULES",
    "PAIRWISE_LETTERS",
    "TIE_LETTER",
    "ParsedRating",
    "ParsedVerdict",
    "asks_for_verdict",
    "parse_rating",
    "parse_verdict",
    "verdict_written",
]

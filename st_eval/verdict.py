"""The one verdict parser: reads ``[[A]]`` / ``[[B]]`` (``[[C]]`` = tie) from a judge's output.

Rule, applied the same way everywhere (CLI, harness plugins, gate, training):

1. Empty output is invalid (``empty``).
2. Markers inside fenced code blocks and block-quote lines (starting with ``>``) are ignored:
   they are the judge quoting material, not deciding.
3. A marker wrapped in quotes or backticks (``"[[A]]"``, `` `[[B]]` ``) is a mention and is
   ignored, unless its line also says "verdict" (``Final verdict: "[[A]]"`` is a decision).
4. Of the markers left, the **last line** that holds any decides. If that line holds two
   different markers (``[[A]] or [[B]]``) the output is invalid (``ambiguous``).
5. No marker left: invalid (``no_verdict``). ``[[C]]`` when ties are off: invalid (``tie_not_allowed``).

Invalid outputs are kept and counted by the caller; they never become a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from st_eval.records import Verdict

_MARKER = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
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


def parse_verdict(text: str | None, *, allow_tie: bool = False) -> ParsedVerdict:
    """Parse one judge output under the module's documented rule."""
    if text is None or not text.strip():
        return ParsedVerdict(None, "empty")
    unfenced = _FENCE.sub("", text)
    deciding_line: list[str] | None = None
    for line in unfenced.splitlines():
        if line.lstrip().startswith(">"):
            continue
        says_verdict = "verdict" in line.lower()
        letters = [
            m.group(1).upper()
            for m in _MARKER.finditer(line)
            if says_verdict or not _is_quoted(line, m.start(), m.end())
        ]
        if letters:
            deciding_line = letters
    if deciding_line is None:
        return ParsedVerdict(None, "no_verdict")
    if len(set(deciding_line)) > 1:
        return ParsedVerdict(None, "ambiguous")
    letter = deciding_line[-1]
    if letter == "C":
        return ParsedVerdict("tie") if allow_tie else ParsedVerdict(None, "tie_not_allowed")
    return ParsedVerdict(letter)  # type: ignore[arg-type]


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

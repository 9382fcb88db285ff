"""The Markdown table every benchmark prints: one line per row, a row that could not run spans
its status and leaves the other cells empty."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def markdown_rows(header: Sequence[str], rows: Sequence[dict], cells: Callable[[dict], Sequence[object]]) -> list[str]:
    """Header, rule and one line per row; ``cells(row)`` for rows whose status is ``ok``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['row']} | {r['status']} |" + " |" * (len(header) - 2))
        else:
            lines.append("| " + " | ".join(str(c) for c in cells(r)) + " |")
    return lines

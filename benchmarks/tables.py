"""What every benchmark writes: its Markdown table (one line per row, a row that could not run
spans its status and leaves the other cells empty) and its JSON report beside it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def markdown_rows(header: Sequence[str], rows: Sequence[dict], cells: Callable[[dict], Sequence[object]]) -> list[str]:
    """Header, rule and one line per row; ``cells(row)`` for rows whose status is ``ok``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['row']} | {r['status']} |" + " |" * (len(header) - 2))
        else:
            lines.append("| " + " | ".join(str(c) for c in cells(r)) + " |")
    return lines


def write_outputs(out: Path, report: dict, table: str) -> None:
    """Write the JSON report to ``out`` and the table beside it (``.md``), both atomically, and
    print the table."""
    from st_eval.jsonl import write_json, write_text

    write_json(out, report)
    markdown_path = write_text(out.with_suffix(".md"), table + "\n")
    print(table)
    print(f"\nJSON: {out}\nMarkdown: {markdown_path}", file=sys.stderr)

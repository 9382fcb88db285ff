"""Resumable outputs that only resume the run that wrote them.

A rerun with the same ``--output`` skips what the file already holds. That is only right when
the file was written by the same producer: another model, template, order, sampling setting,
engine or seed would mix two runs into one table with no warning. Every resumable output
records its producer on each row (a judgment's ``engine``, ``model``, ``template``, ``orders``
and ``sampling``; a RewardBench 2 row's ``protocol`` too), and :func:`check_producer` refuses a
row written by another one with one line that names the first field that differs.
``--overwrite`` (:func:`start_output`) starts the file over instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from st_eval.errors import InputError


def as_recorded(value: Any) -> Any:
    """``value`` as it reads back from a JSONL row (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, ensure_ascii=False))


#: a field one side does not have
ABSENT = object()


def first_difference(recorded: Any, expected: Any, name: str) -> tuple[str, Any, Any] | None:
    """The first (dotted field name, recorded, expected) where two producers differ, else None.

    Dictionaries are compared key by key (a key one side lacks differs, as :data:`ABSENT`), so
    the message names ``sampling.temperature`` rather than the whole settings block.
    """
    if isinstance(recorded, dict) and isinstance(expected, dict):
        for key in sorted(set(recorded) | set(expected), key=str):
            found = first_difference(recorded.get(key, ABSENT), expected.get(key, ABSENT), f"{name}.{key}")
            if found:
                return found
        return None
    return None if recorded == expected else (name, recorded, expected)


def check_producer(path: Path, line: int, row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a row that another producer wrote: one line naming the file, line and field."""
    for field, value in as_recorded(expected).items():
        found = first_difference(row.get(field, ABSENT), value, field)
        if found:
            name, recorded, wanted = found
            raise InputError(
                f"{path}: line {line}: field {name!r} is {_shown(recorded)} in this file, {_shown(wanted)} in this run: it was written by "
                "another run (model, template, order, sampling, engine or seed); use --overwrite to start over, or another --output"
            )


def _shown(value: Any) -> str:
    return "absent" if value is ABSENT else repr(value)


def start_output(path: Path | None, overwrite: bool) -> None:
    """With ``--overwrite``, empty an existing output so the run starts over instead of resuming."""
    if path is not None and overwrite and path.exists():
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an output file")
        path.write_text("", encoding="utf-8")


__all__ = ["ABSENT", "as_recorded", "check_producer", "first_difference", "start_output"]

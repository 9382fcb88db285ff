"""Reading pairs from JSONL, JSON or parquet files, with errors that name file, line and field.

Accepted fields per row: ``instruction`` (aliases ``input``, ``prompt``) or ``conversation``
(a list of ``{role, content}``), ``response_a``, ``response_b``, and optionally ``id``,
``reference``, ``label`` (``A``/``B``; ``1``/``2`` accepted) and ``turns_a``/``turns_b``
(multi-turn: one answer per user turn). Any other field is kept as metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.records import Message, Pair

INSTRUCTION_ALIASES = ("instruction", "input", "prompt")
_KNOWN = {*INSTRUCTION_ALIASES, "conversation", "response_a", "response_b", "id", "reference", "label", "turns_a", "turns_b"}
_LABELS = {"A": "A", "B": "B", "a": "A", "b": "B", "1": "A", "2": "B", "tie": "tie", "C": "tie"}


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or row number, row) from a JSONL, JSON (list of objects) or parquet file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, row
        return
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from exc
        if not isinstance(data, list):
            raise InputError(f"{path}: a .json file must hold a list of objects")
        for number, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: item {number}: expected an object, got {type(row).__name__}")
            yield number, row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number}: not valid JSON: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def pair_from_row(row: dict[str, Any], where: str, default_id: str) -> Pair:
    """Validate one row into a Pair; ``where`` (e.g. ``pairs.jsonl: line 3``) prefixes errors."""
    conversation = _conversation(row, where)
    responses = {}
    for key in ("response_a", "response_b"):
        value = row.get(key)
        if value is None and row.get(key.replace("response", "turns")):
            value = row[key.replace("response", "turns")][-1]
        if not isinstance(value, str):
            raise InputError(f"{where}: field {key!r} is missing or not a string")
        responses[key] = value
    label = row.get("label")
    if label is not None:
        if str(label) not in _LABELS:
            raise InputError(f"{where}: field 'label' must be A or B, got {label!r}")
        label = _LABELS[str(label)]
    for key in ("turns_a", "turns_b"):
        if row.get(key) is not None and not (
            isinstance(row[key], list) and all(isinstance(t, str) for t in row[key])
        ):
            raise InputError(f"{where}: field {key!r} must be a list of strings")
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise InputError(f"{where}: field 'reference' must be a string")
    return Pair(
        id=str(row.get("id", default_id)),
        conversation=conversation,
        response_a=responses["response_a"],
        response_b=responses["response_b"],
        reference=reference,
        label=label,
        turns_a=row.get("turns_a"),
        turns_b=row.get("turns_b"),
        metadata={k: v for k, v in row.items() if k not in _KNOWN},
    )


def _conversation(row: dict[str, Any], where: str) -> list[Message]:
    if "conversation" in row and row["conversation"] is not None:
        turns = row["conversation"]
        if not isinstance(turns, list) or not turns:
            raise InputError(f"{where}: field 'conversation' must be a non-empty list of {{role, content}}")
        messages = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str) or turn.get("role") not in (
                "system",
                "user",
                "assistant",
            ):
                raise InputError(
                    f"{where}: field 'conversation[{index}]' must be {{role: system|user|assistant, content: str}}"
                )
            messages.append(Message(turn["role"], turn["content"]))
        if not any(m.role == "user" for m in messages):
            raise InputError(f"{where}: field 'conversation' has no user turn")
        return messages
    for alias in INSTRUCTION_ALIASES:
        if isinstance(row.get(alias), str):
            return [Message("user", row[alias])]
    raise InputError(f"{where}: field 'instruction' (or 'input', 'prompt', 'conversation') is missing")


def load_pairs(path: str | Path) -> list[Pair]:
    """All pairs of a file, validated; ids default to the row number."""
    pairs = [pair_from_row(row, f"{path}: line {n}", str(n)) for n, row in read_rows(path)]
    if not pairs:
        raise InputError(f"{path}: file holds no pairs")
    seen: set[str] = set()
    for pair in pairs:
        if pair.id in seen:
            raise InputError(f"{path}: field 'id': duplicate id {pair.id!r}")
        seen.add(pair.id)
    return pairs

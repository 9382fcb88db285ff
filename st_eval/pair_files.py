"""Reading pairs from JSONL, JSON or parquet files, with errors that name file, line and field.

Accepted fields per row: ``instruction`` (aliases ``input``, ``prompt``) or ``conversation``
(a list of ``{role, content}``), ``response_a``, ``response_b``, and optionally ``id``,
``reference``, ``label`` (``A``/``B``; ``1``/``2`` accepted) and ``turns_a``/``turns_b``
(multi-turn: one answer per user turn). Any other field is kept as metadata; a ``metadata``
object (how st-eval writes pairs, e.g. a run's ``pairs.heldout.jsonl``) is merged into it.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from st_eval.errors import InputError
from st_eval.records import Message, Pair

INSTRUCTION_ALIASES = ("instruction", "input", "prompt")
_KNOWN = {*INSTRUCTION_ALIASES, "conversation", "response_a", "response_b", "id", "reference", "label", "turns_a", "turns_b"}
_LABELS = {"A": "A", "B": "B", "a": "A", "b": "B", "1": "A", "2": "B", "tie": "tie", "C": "tie"}


def check_file(path: Path) -> None:
    """A readable file, or an error naming it: missing, a folder, or unreadable."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a file")


def decode_utf8(data: bytes, path: Path, first_line: int = 1) -> str:
    """``data`` as text (a UTF-8 byte-order mark is dropped); not UTF-8 is an error naming the
    file and the line of the first bad byte."""
    if first_line == 1 and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def read_text(path: str | Path) -> str:
    """The whole text of a small file (templates, recipes, reports), with the errors above."""
    path = Path(path)
    check_file(path)
    try:
        return decode_utf8(path.read_bytes(), path)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read: {exc.strerror}") from None


def parse_json(text: str, where: str) -> Any:
    """One JSON value; NaN and Infinity (accepted by Python, not JSON) and nesting beyond
    Python's recursion limit are errors naming ``where``."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        line = f": line {exc.lineno}" if ": line" not in where and exc.lineno > 1 else ""
        raise InputError(f"{where}{line}: not valid JSON: {exc.msg}") from None
    except _NotJson as exc:
        raise InputError(f"{where}: not valid JSON: {exc} is not a JSON number (write null or a string)") from None
    except RecursionError:
        raise InputError(f"{where}: not valid JSON: nested too deeply") from None


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> Any:
    raise _NotJson(constant)


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or row number, row) from a JSONL, JSON (list of objects) or parquet file.

    JSONL is read line by line, so memory stays bounded by the longest line, not the file;
    a byte-order mark and CRLF line ends are accepted. Every problem (missing file, a folder,
    not UTF-8, not JSON, NaN, a row that is not an object, an empty file) is an InputError
    naming the file and line.
    """
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    if suffix == ".json":
        data = parse_json(read_text(path), str(path))
        if not isinstance(data, list):
            raise InputError(f"{path}: a .json file must hold a list of objects")
        if not data:
            raise InputError(f"{path}: file holds no rows")
        for number, row in enumerate(data, start=1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: item {number}: expected an object, got {type(row).__name__}")
            yield number, row
        return
    found = False
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = decode_utf8(raw, path, first_line=number) if number > 1 else decode_utf8(raw, path)
            if not line.strip():
                continue
            row = parse_json(line, f"{path}: line {number}")
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
            found = True
            yield number, row
    if not found:
        raise InputError(f"{path}: file is empty")


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a parquet file, one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable parquet file: {exc}") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row
    if number == 0:
        raise InputError(f"{path}: file holds no rows")


def row_id(row: dict[str, Any], where: str, default: str) -> str:
    """The row's ``id`` as text (a string or a whole number), else ``default`` when absent."""
    value = row.get("id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: field 'id' must be a string or a whole number, got {type(value).__name__}")
    return str(value)


def check_unique(ids: Iterable[tuple[str, str]]) -> None:
    """Refuse a second row with an id already seen: ``ids`` are (id, where) in file order."""
    seen: dict[str, str] = {}
    for identifier, where in ids:
        if identifier in seen:
            raise InputError(f"{where}: field 'id': duplicate id {identifier!r} (first at {seen[identifier]})")
        seen[identifier] = where


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
        id=row_id(row, where, default_id),
        conversation=conversation,
        response_a=responses["response_a"],
        response_b=responses["response_b"],
        reference=reference,
        label=label,
        turns_a=row.get("turns_a"),
        turns_b=row.get("turns_b"),
        metadata=_metadata(row),
    )


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The row's other fields, with a nested ``metadata`` object (``Pair.to_dict``) merged in."""
    nested = row.get("metadata")
    extra = {k: v for k, v in row.items() if k not in _KNOWN and not (k == "metadata" and isinstance(v, dict))}
    return {**nested, **extra} if isinstance(nested, dict) else extra


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
    """All pairs of a file, validated; ids default to the row number and must be unique."""
    rows = [(pair_from_row(row, f"{path}: line {n}", str(n)), f"{path}: line {n}") for n, row in read_rows(path)]
    check_unique((pair.id, where) for pair, where in rows)
    return [pair for pair, _ in rows]

"""Files that survive crashes: atomic whole-file writes (JSON, JSONL, text) and resumable appends."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which must not race other threads' writes.
_NEW_FILE_MODE = 0o666 & ~_umask()


def _replace_atomically(path: str | Path, write: Callable[[TextIO], None]) -> Path:
    """Write ``path`` through a staging file in the same folder, then rename it over the target:
    readers see the old file or the whole new one, never half. The file gets the permissions a
    plain ``open(path, "w")`` would give (the old file's, or the umask's), not the staging
    file's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else _NEW_FILE_MODE
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write all rows to ``path`` atomically."""

    def write(handle: TextIO) -> None:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    return _replace_atomically(path, write)


def write_json(path: str | Path, data: Any) -> Path:
    """Write one JSON document atomically."""

    def write(handle: TextIO) -> None:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")

    return _replace_atomically(path, write)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file (a Markdown report, a card) atomically."""
    return _replace_atomically(path, lambda handle: handle.write(text))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the complete lines of a file st-eval wrote (judgments, run artifacts); a torn last
    line (crash mid-append) is ignored, not fatal. A file that is not such a file (a folder, not
    UTF-8, a line that is not a JSON object) is an InputError naming the file and line."""
    from st_eval.errors import InputError
    from st_eval.pair_files import check_file, decode_utf8, parse_json

    path = Path(path)
    if not path.exists():
        return []
    check_file(path)
    rows = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break
            line = decode_utf8(raw, path, first_line=number)
            if not line.strip():
                continue
            row = parse_json(line, f"{path}: line {number}")
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


class JsonlAppender:
    """Appends one JSON line per finished item and flushes it, so a rerun can resume.

    On open, a torn trailing line left by a crash is cut away before new lines are added.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_torn_tail(self.path)
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)

"""Run-directory bookkeeping: resumable chunked work and atomic stage outputs.

Every stage writes its final artifact in one atomic step (``st_eval.jsonl``); long stages also
append each finished chunk to a ``*.partial.jsonl`` file so an interrupted run resumes mid-stage.
A reader only ever trusts a final artifact, never a partial one, except to skip finished items.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from st_eval.jsonl import JsonlAppender, read_jsonl
from st_eval.progress import ChunkProgress, item_bar

T = TypeVar("T")


def resumable_chunks(
    items: Sequence[T],
    key: Callable[[T], str],
    work: Callable[[list[T]], list[dict[str, Any]]],
    partial: Path,
    *,
    chunk_size: int,
    desc: str,
) -> list[dict[str, Any]]:
    """Run ``work`` over ``items`` chunk by chunk, appending its rows to ``partial``.

    ``work`` returns one row per item, each holding the item's key under ``"key"``. Items whose
    key is already in ``partial`` are skipped, so a rerun does only the unfinished work. Returns
    all rows, in item order.
    """
    done = {row["key"]: row for row in read_jsonl(partial)}
    todo = [item for item in items if key(item) not in done]
    bar = item_bar(len(items), desc, "item", initial=len(items) - len(todo))
    tracker = ChunkProgress(bar)
    try:
        with JsonlAppender(partial) as appender:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start : start + chunk_size]
                with tracker.chunk(len(chunk)):
                    rows = work(chunk)
                for index, row in enumerate(rows):
                    appender.append(row)
                    done[row["key"]] = row
                    tracker.finish_item(index)
    finally:
        bar.close()
    return [done[key(item)] for item in items]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def replace_folder(staging: Path, target: Path) -> None:
    """Move a fully written folder into place; an older folder at ``target`` is replaced."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def staging_folder(target: Path) -> Path:
    """A fresh hidden folder beside ``target`` to write into before ``replace_folder``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-staging-", dir=target.parent))

"""Stage 1: the unlabeled instruction pool (built-in, local files, Hugging Face, MT-Bench,
Self-Instruct), deduplicated.

An instruction may carry an ``answer`` that came with it (a Self-Instruct task's human-written
output): one response to it, usable as a response but never a preference, since nothing says
how good it is compared with another.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from st_eval.errors import InputError
from st_eval.training.config import PoolConfig, PoolSource, Recipe, resolve_path


@dataclass
class Instruction:
    """One user request, with where it came from and (after selection) its tags."""

    id: str
    text: str
    source: str
    tags: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Instruction:
        return cls(id=data["id"], text=data["text"], source=data["source"], tags=data.get("tags") or {}, answer=data.get("answer"))


def builtin_instructions() -> list[Instruction]:
    """The instructions shipped with st-eval: a few hundred across the paper's categories."""
    text = (resources.files("st_eval") / "data" / "instructions.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Instruction(r["id"], r["instruction"], "builtin", {"source_category": r["category"]}) for r in rows]


def normalize(text: str) -> str:
    """The dedup key: case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def build_pool(recipe: Recipe) -> tuple[list[Instruction], dict[str, int]]:
    """Read every source, drop too short/long and duplicate instructions, sample ``limit``.

    Returns the instructions and counts (read, too_short, too_long, duplicates, kept).
    """
    config: PoolConfig = recipe.pool
    stats = {"read": 0, "too_short": 0, "too_long": 0, "duplicates": 0}
    seen: set[str] = set()
    pool: list[Instruction] = []
    for index, source in enumerate(config.sources):
        if not source.required and source.path:
            try:
                resolve_path(recipe, source.path, shared=True)
            except InputError:
                stats[f"skipped_source_{index}"] = 1  # optional and absent here
                continue
        for item in _read_source(recipe, source, index):
            stats["read"] += 1
            if len(item.text.strip()) < config.min_chars:
                stats["too_short"] += 1
                continue
            if len(item.text) > config.max_chars:
                stats["too_long"] += 1
                continue
            key = normalize(item.text)
            if key in seen:
                stats["duplicates"] += 1
                continue
            seen.add(key)
            pool.append(item)
    if config.limit and len(pool) > config.limit:
        chosen = sorted(random.Random(recipe.seed).sample(range(len(pool)), config.limit))
        pool = [pool[i] for i in chosen]
    stats["kept"] = len(pool)
    if not pool:
        raise InputError("pool: no instruction left after reading and deduplicating the sources")
    return pool, stats


def _read_source(recipe: Recipe, source: PoolSource, index: int) -> Iterator[Instruction]:
    items: Iterator[Instruction]
    if source.kind == "builtin":
        items = iter(builtin_instructions())
    elif source.kind == "mt_bench":
        items = _mt_bench(resolve_path(recipe, source.path or "mt_bench/question.jsonl", shared=True))
    elif source.kind == "self_instruct":
        items = _self_instruct(resolve_path(recipe, source.path or "", shared=True))
    elif source.kind == "file":
        items = _local_file(recipe, source, index)
    else:
        items = _hf_dataset(source, index)
    for count, item in enumerate(items):
        if source.limit and count >= source.limit:
            return
        yield item


def _mt_bench(path) -> Iterator[Instruction]:
    from st_eval.pair_files import read_rows

    for number, row in read_rows(path):
        turns = row.get("turns")
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise InputError(f"{path}: line {number}: field 'turns' must be a non-empty list of strings")
        yield Instruction(f"mt_bench-{row.get('question_id', number)}", turns[0], "mt_bench", {"source_category": row.get("category")})


def _self_instruct(path) -> Iterator[Instruction]:
    """Self-Instruct tasks (``seed_tasks.jsonl``, ``user_oriented_instructions.jsonl``): each
    task's first instance gives the request (instruction, then the instance's input) and its
    human-written output as the instruction's answer."""
    from st_eval.pair_files import read_rows

    for number, row in read_rows(path):
        instances = row.get("instances")
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise InputError(f"{path}: line {number}: field 'instruction' is missing or not text")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise InputError(f"{path}: line {number}: field 'instances' must be a non-empty list of {{input, output}}")
        first = instances[0]
        for key in ("input", "output"):
            if not isinstance(first.get(key), str):
                raise InputError(f"{path}: line {number}: field 'instances[0].{key}' is missing or not text")
        text = row["instruction"].strip() + (f"\n\n{first['input'].strip()}" if first["input"].strip() else "")
        answer = first["output"].strip() or None
        yield Instruction(str(row.get("id", f"{path.stem}-{number}")), text, f"self_instruct:{path.name}", answer=answer)


def _local_file(recipe: Recipe, source: PoolSource, index: int) -> Iterator[Instruction]:
    from st_eval.pair_files import read_rows

    path = resolve_path(recipe, source.path or "")
    for number, row in read_rows(path):
        text = _instruction_text(row.get(source.field))
        if text is None:
            raise InputError(f"{path}: line {number}: field {source.field!r} is missing or not text/chat turns")
        yield Instruction(str(row.get("id", f"{path.stem}-{number}")), text, f"file:{path.name}")


def _hf_dataset(source: PoolSource, index: int) -> Iterator[Instruction]:
    from datasets import load_dataset

    try:
        rows = load_dataset(source.dataset, source.config, split=source.split, streaming=True)
    except Exception as exc:  # datasets raises many types for missing/unreachable datasets
        raise InputError(f"pool.sources[{index}]: cannot load dataset {source.dataset!r}: {exc}") from exc
    for number, row in enumerate(rows):
        text = _instruction_text(row.get(source.field))
        if text is None:
            raise InputError(f"pool.sources[{index}]: {source.dataset} row {number}: field {source.field!r} is missing")
        yield Instruction(f"{source.dataset}-{number}", text, f"hf:{source.dataset}")


def _instruction_text(value: Any) -> str | None:
    """A string as is; a chat (list of {role, content}) gives its first user turn."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for turn in value:
            if isinstance(turn, dict) and turn.get("role") == "user" and isinstance(turn.get("content"), str):
                return turn["content"]
    return None

"""Stage 2: the generator model tags each instruction (category, complexity, length); the recipe keeps some.

The tag answer must be exactly three labelled lines; anything else is ``untagged`` with a
reason, counted, and kept or dropped per ``selection.keep_untagged``. No guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from st_eval.engines import Engine, SamplingConfig
from st_eval.training.artifacts import resumable_chunks
from st_eval.training.config import CATEGORIES, LENGTH_CLASSES, SelectionConfig
from st_eval.training.instruction_pool import Instruction

_LINE = re.compile(r"^\s*(category|complexity|length)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_CATEGORY_BY_KEY = {c.casefold(): c for c in CATEGORIES}


@dataclass(frozen=True)
class Tags:
    """A parsed tag answer; ``reason`` says why it is invalid when ``category`` is None."""

    category: str | None = None
    complexity: int | None = None
    length: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def tag_prompt(text: str) -> list[dict[str, str]]:
    """Chat messages asking the model to tag one instruction, after one worked example turn."""
    return [
        {"role": "user", "content": _TAG_ASK.replace("{text}", "Write a haiku about autumn leaves.")},
        {"role": "assistant", "content": "Category: creative writing\nComplexity: 2\nLength: short"},
        {"role": "user", "content": _TAG_ASK.replace("{text}", text)},
    ]


_TAG_ASK = (
    "Label the user request below.\n\n<request>\n{text}\n</request>\n\n"
    f"Categories: {', '.join(CATEGORIES)}.\n"
    "Answer with exactly these three lines and nothing else:\n"
    "Category: <one of the categories>\n"
    "Complexity: <a whole number from 1 (trivial) to 10 (very hard)>\n"
    "Length: <short, medium or long: how long a good answer is>"
)


def parse_tags(output: str) -> Tags:
    """Strictly parse a tag answer: each of the three labels once, values from the allowed sets."""
    if not output or not output.strip():
        return Tags(reason="empty")
    found: dict[str, str] = {}
    for line in output.strip().splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line.replace("*", ""))
        if not match:
            return Tags(reason="extra_text")
        label = match.group(1).lower()
        if label in found:
            return Tags(reason=f"repeated_{label}")
        found[label] = match.group(2).rstrip(".").strip()
    missing = [k for k in ("category", "complexity", "length") if k not in found]
    if missing:
        return Tags(reason=f"missing_{missing[0]}")
    category = _CATEGORY_BY_KEY.get(found["category"].casefold())
    if category is None:
        return Tags(reason="bad_category")
    if not re.fullmatch(r"\d{1,2}", found["complexity"]) or not 1 <= int(found["complexity"]) <= 10:
        return Tags(reason="bad_complexity")
    length = found["length"].casefold()
    if length not in LENGTH_CLASSES:
        return Tags(reason="bad_length")
    return Tags(category, int(found["complexity"]), length)


def keep(tags: Tags, config: SelectionConfig) -> bool:
    """Whether an instruction with these tags passes the recipe's filters."""
    if not tags.valid:
        return config.keep_untagged
    if config.categories and tags.category not in config.categories:
        return False
    if not config.min_complexity <= (tags.complexity or 0) <= config.max_complexity:
        return False
    return not config.lengths or tags.length in config.lengths


def select_instructions(
    pool: list[Instruction], engine: Engine, config: SelectionConfig, *, seed: int, partial: Path, batch: int = 16
) -> tuple[list[Instruction], dict[str, int]]:
    """Tag every instruction (greedy decoding) and keep those the recipe wants.

    Returns the kept instructions (tags attached) and counts: tagged, untagged per reason, kept,
    and, for items whose category is known (built-in pool), how often the tag agrees with it:
    a parseable tag is not necessarily a right one.
    """
    if not config.enabled:
        return list(pool), {"tagged": 0, "untagged": 0, "kept": len(pool)}
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=config.max_new_tokens, seed=seed)

    def work(chunk: list[Instruction]) -> list[dict]:
        outputs = engine.generate([tag_prompt(i.text) for i in chunk], n=1, sampling=sampling)
        return [{"key": i.id, "output": out[0]} for i, out in zip(chunk, outputs)]

    rows = resumable_chunks(pool, lambda i: i.id, work, partial, chunk_size=batch, desc="selection")
    stats: dict[str, int] = {"tagged": 0, "untagged": 0}
    kept = []
    for item, row in zip(pool, rows):
        tags = parse_tags(row["output"])
        if tags.valid:
            stats["tagged"] += 1
            if item.tags.get("source_category"):  # built-in and MT-Bench items carry a known category
                stats["known_category"] = stats.get("known_category", 0) + 1
                stats["agrees_with_known"] = stats.get("agrees_with_known", 0) + (tags.category == item.tags["source_category"])
        else:
            stats["untagged"] += 1
            stats[f"untagged_{tags.reason}"] = stats.get(f"untagged_{tags.reason}", 0) + 1
        if keep(tags, config):
            tagged = {"category": tags.category, "complexity": tags.complexity, "length": tags.length}
            kept.append(Instruction(item.id, item.text, item.source, {**item.tags, **tagged, "tag_error": tags.reason}))
    if config.limit:
        kept = kept[: config.limit]
    stats["kept"] = len(kept)
    return kept, stats

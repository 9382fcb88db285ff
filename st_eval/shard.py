"""Split work across machines or processes: ``--shard i/n`` takes the i-th of n contiguous parts.

The split is the one ``datasets.Dataset.shard(num_shards=n, index=i, contiguous=True)`` makes,
so a stage that shards a ``datasets`` table and a command that shards a list of pairs agree on
who does what, and concatenating the shards' outputs in order gives the unsharded order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from st_eval.errors import InputError

T = TypeVar("T")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) as ``(i, n)``; None stays None (no sharding)."""
    if text is None:
        return None
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def shard_bounds(length: int, index: int, count: int) -> tuple[int, int]:
    """Start and end of shard ``index`` of ``count`` over ``length`` items (datasets' split)."""
    size, extra = divmod(length, count)
    start = size * index + min(index, extra)
    return start, start + size + (1 if index < extra else 0)


def take_shard(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The items of one shard, in order (all items when ``shard`` is None)."""
    if shard is None:
        return list(items)
    start, end = shard_bounds(len(items), *shard)
    return list(items[start:end])

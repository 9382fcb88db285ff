"""Progress bars that move while a chunk of work is being generated, not only when it ends.

Work is batched: the judge sends a chunk of pairs (the training loop a chunk of items) to the
engine in one call, so a bar counting finished items would jump once per chunk and a long run
would look frozen for minutes. Engines report each finished sample through
:func:`sample_done` (the ``hf`` engine as each row of its continuous batch ends; others when a
call returns); :class:`ChunkProgress` turns those reports into fractional progress of its item
bar, at the samples-per-item rate measured on the chunks already done, so the bar's rate and ETA
stay live. When the chunk ends the bar is set to the exact count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_listener: ContextVar[Callable[[int], None] | None] = ContextVar("st_eval_sample_listener", default=None)


def sample_done(count: int = 1) -> None:
    """Report ``count`` finished samples to the progress display listening in this context."""
    listener = _listener.get()
    if listener is not None and count:
        listener(count)


@contextmanager
def listen(callback: Callable[[int], None]) -> Iterator[None]:
    """Send the samples engines report in this context to ``callback`` (their count each time):
    progress bars, and benchmarks timing the first finished judgment."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


class ChunkProgress:
    """Fractional progress of an item bar (a tqdm bar) from the samples finished inside each chunk."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.items_done = 0
        self.samples_seen = 0
        self._chunk_samples = 0
        self._chunk_start = 0.0

    @contextmanager
    def chunk(self, items: int) -> Iterator[None]:
        """Work on ``items`` items; samples reported meanwhile advance the bar within the chunk."""
        self._chunk_samples = 0
        self._chunk_start = float(self.bar.n)
        try:
            with listen(lambda count: self._advance(count, items)):
                yield
        finally:
            self.items_done += items
            self.samples_seen += self._chunk_samples
            if getattr(self.bar, "postfix", None):  # the first chunk's count would sit beside the item rate, meaning nothing
                self.bar.set_postfix_str("", refresh=False)

    def _advance(self, count: int, items: int) -> None:
        self._chunk_samples += count
        if not self.items_done or not self.samples_seen:
            # no rate yet: show that work moves, in its own unit, until the first chunk ends
            self.bar.set_postfix_str(f"first {items} {getattr(self.bar, 'unit', 'item')}s: {self._chunk_samples} judge outputs done", refresh=True)
            return
        per_item = self.samples_seen / self.items_done
        target = self._chunk_start + min(self._chunk_samples / per_item, items * 0.99)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def finish_item(self, index: int) -> None:
        """Item ``index`` (0-based) of the chunk that just ended is done: the bar shows at least
        that many whole items, and exactly the chunk's count after its last item."""
        target = self._chunk_start + index + 1
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)


def item_bar(total: int, desc: str, unit: str, *, initial: int = 0, disable: bool = False) -> Any:
    """A tqdm bar over items whose count may move in fractions (shown rounded)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=disable,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]",
    )


__all__ = ["ChunkProgress", "item_bar", "listen", "sample_done"]

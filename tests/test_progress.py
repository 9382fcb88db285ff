"""Progress bars move while a chunk is generated: samples reported by the engine advance the item
bar at the samples-per-item rate of the chunks already done."""

from __future__ import annotations

import io

from tqdm import tqdm

from st_eval.engines.base import Engine
from st_eval.judge import Judge, JudgeConfig
from st_eval.progress import ChunkProgress, item_bar, sample_done
from st_eval.records import Message, Pair


def test_chunk_progress_moves_within_a_chunk_and_lands_on_the_exact_count():
    bar = tqdm(total=8, file=io.StringIO(), unit="row")
    tracker = ChunkProgress(bar)
    with tracker.chunk(4):
        sample_done(8)  # no rate known yet: the bar shows the outputs, in their own unit, not a guess
        assert bar.n == 0 and bar.postfix == "first 4 rows: 8 judge outputs done"
    for index in range(4):
        tracker.finish_item(index)
    assert bar.n == 4
    assert not bar.postfix  # no frozen count beside the rows/s rate once the rate is known
    with tracker.chunk(4):
        sample_done(4)  # 2 samples per item so far: 4 samples are 2 items
        assert bar.n == 6
        sample_done(100)  # never past the chunk before its items are done
        assert 7 < bar.n < 8
    tracker.finish_item(0)
    assert 7 < bar.n < 8
    tracker.finish_item(3)
    assert bar.n == 8
    sample_done(5)  # outside a chunk nobody listens
    assert bar.n == 8


class CountingStandIn(Engine):
    """Stand-in (not a model) that reports each sample as it 'finishes' and records the bar."""

    name = "stand-in"

    def __init__(self, bar) -> None:
        super().__init__("stand-in")
        self.bar = bar
        self.seen: list[float] = []

    def generate(self, prompts, n=1, sampling=None):
        for _ in prompts:
            sample_done(n)
            self.seen.append(self.bar.n)
        return [["Final verdict: [[A]]"] * n for _ in prompts]


def test_the_judges_bar_moves_during_each_chunk_after_the_first():
    bar = item_bar(48, "judging", "pair", disable=False)
    bar.fp = io.StringIO()
    engine = CountingStandIn(bar)
    pairs = [Pair(str(i), [Message("user", "q")], "a", "b") for i in range(48)]
    judgments = list(Judge(engine, JudgeConfig(order="both")).iter_judgments(pairs, bar=bar))
    assert len(judgments) == 48 and bar.n == 48
    second_chunk = engine.seen[32:64]  # 16 pairs x 2 orders per chunk
    assert second_chunk[0] > 16 and second_chunk[-1] > second_chunk[0]  # moved before the chunk ended

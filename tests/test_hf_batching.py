"""Continuous batching (st_eval.engines.hf_batching): the slot cache's bookkeeping, and greedy
outputs equal to one-prompt-at-a-time ``generate`` when slots are refilled mid-run."""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from st_eval.engines.hf_batching import ContinuousBatcher, SlotCache, _slot_order, common_prefix, use_cpu_attention  # noqa: E402
from tiny_models import tiny_llama  # noqa: E402


def test_common_prefix_and_slot_order():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5], [6]]) == 0
    assert common_prefix([]) == 0
    # slots 1 and 3 of 5 finish: removing 3 moves row 4 into slot 3; removing 1 then moves the
    # new last slot (3, holding row 4) into slot 1
    assert _slot_order(5, [1, 3]) == [0, 4, 2]
    assert _slot_order(3, [2]) == [0, 1]


def test_slot_cache_keeps_each_rows_tokens_right_aligned():
    model = tiny_llama()
    cache = SlotCache(model.config, slots=3, dtype=torch.float32, device=torch.device("cpu"))
    heads, dim = 2, 16

    def kv(value: float, length: int):
        tensor = torch.full((1, heads, length, dim), value)
        return [(tensor, tensor + 0.5)] * 2

    cache.insert(0, kv(1.0, 4), 4)
    cache.insert(1, kv(2.0, 7), 7)  # longer than the window: the cache grows to the left
    cache.insert(2, kv(3.0, 2), 2)
    assert cache.rows == 3 and cache.end - cache.start == 7
    keys = cache.keys[0][:3, :, cache.start : cache.end]
    assert keys[0, 0, -4:, 0].tolist() == [1.0] * 4 and cache.valid[0, cache.start : cache.end].sum() == 4
    assert keys[1, 0, :, 0].tolist() == [2.0] * 7
    cache.remove(1)  # the longest row leaves: row 2 moves into slot 1 and the window shrinks
    assert cache.rows == 2 and cache.lengths[:2] == [4, 2] and cache.end - cache.start == 4
    assert cache.keys[0][1, 0, cache.end - 2 : cache.end, 0].tolist() == [3.0, 3.0]
    assert cache.values[1][1, 0, cache.end - 1, 0].item() == 3.5
    mask, positions, starts = cache.step_inputs()
    assert positions.flatten().tolist() == [4, 2] and starts == [0, 2]
    assert mask[:, 0, 0].tolist() == [[True] * 5, [False, False, True, True, True]]


@pytest.mark.parametrize(("slots", "first_prompts"), [(1, 4), (3, 4), (3, 0), (8, 2)])
def test_greedy_equals_one_prompt_at_a_time(slots, first_prompts):
    model = tiny_llama(seed=1)
    use_cpu_attention(model)
    generator = torch.Generator().manual_seed(3)
    shared = torch.randint(3, 97, (20,), generator=generator).tolist()  # a shared prefix, reused once
    prompts = [shared + torch.randint(3, 97, (n,), generator=generator).tolist() for n in (1, 9, 4, 15, 6)]
    batcher = ContinuousBatcher(
        model, slots=slots, pick=lambda logits: logits.argmax(-1), finished=lambda p, tokens, t: t == 7, eos_ids=[0],
        first_prompts=first_prompts,
    )
    got = batcher.run(prompts, samples=1, max_new_tokens=12)
    for prompt, (tokens,) in zip(prompts, got):
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=0, pad_token_id=0)
        expected = out[0, len(prompt) :].tolist()
        if 0 in expected:  # EOS is not part of the output
            expected = expected[: expected.index(0)]
        if 7 in expected:  # the stop rule keeps the token that ended the sample
            expected = expected[: expected.index(7) + 1]
        assert tokens == expected


def test_samples_of_a_prompt_fill_several_slots():
    model = tiny_llama(seed=2)
    prompts = [[5, 6, 7, 8], [9, 10]]
    generator = torch.Generator().manual_seed(0)

    def sample(logits):
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)

    batcher = ContinuousBatcher(model, slots=4, pick=sample, finished=lambda *a: False, eos_ids=[])
    got = batcher.run(prompts, samples=3, max_new_tokens=6)
    assert [len(s) for s in got] == [3, 3]
    assert all(len(tokens) == 6 for samples in got for tokens in samples)
    assert len({tuple(t) for t in got[0]}) > 1, "three samples at temperature 1 should differ"


@pytest.mark.slow
def test_thread_choice(embedded_model, monkeypatch):
    from st_eval.engines.hf import HFEngine
    from st_eval.errors import EngineError

    assert HFEngine(embedded_model, threads=1).cpu_threads() == 1
    with pytest.raises(EngineError):
        HFEngine(embedded_model, threads=0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert HFEngine(embedded_model).cpu_threads() == torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= HFEngine(embedded_model).cpu_threads() <= torch.get_num_threads()


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_idle_cores_excludes_a_core_another_process_keeps_busy():
    import multiprocessing

    from st_eval.engines.hf import _idle_cores

    cores = len(os.sched_getaffinity(0))
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(5.0,))
    busy.start()
    try:
        time.sleep(1.0)  # let the child start spinning
        assert _idle_cores(0.5) <= cores - 1
    finally:
        busy.terminate()
        busy.join()


def test_a_first_sample_ends_before_the_other_prompts_are_read():
    """Until a first sample ends, only the ``first_prompts`` shortest prompts are prefilled."""
    model = tiny_llama(seed=4)
    use_cpu_attention(model)
    generator = torch.Generator().manual_seed(5)
    lengths = [30, 3, 25, 5, 40, 20, 4, 35]
    prompts = [torch.randint(3, 97, (n,), generator=generator).tolist() for n in lengths]
    prefilled: list[int] = []
    forward = model.forward

    def counting(*args, **kwargs):
        if kwargs["input_ids"].shape[1] > 1:
            prefilled.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    model.forward = counting
    at_first_done: list[list[int]] = []
    batcher = ContinuousBatcher(
        model, slots=8, pick=lambda logits: logits.argmax(-1), finished=lambda *a: False, eos_ids=[], first_prompts=2
    )
    got = batcher.run(prompts, samples=1, max_new_tokens=10, on_done=lambda: at_first_done or at_first_done.append(list(prefilled)))
    assert at_first_done[0] == [3, 4], "the two shortest prompts alone, before any other is read"
    assert sorted(prefilled[2:], reverse=True) == prefilled[2:] and len(prefilled) == 8, "then the rest, longest first"
    assert all(len(tokens) == 10 for (tokens,) in got)

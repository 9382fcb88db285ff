"""The hf engine's fast path: same greedy outputs as a plain one-at-a-time ``generate`` loop,
early stop once the verdict is written, n samples from one prefill."""

from __future__ import annotations

import pytest

from st_eval.engines.base import SamplingConfig
from st_eval.judge import build_prompt
from st_eval.records import Message, Pair
from st_eval.verdict import asks_for_verdict, parse_verdict, verdict_written


def test_verdict_written_needs_a_complete_accepted_verdict_line():
    assert verdict_written("A is right.\nFinal verdict: [[A]]")
    assert verdict_written("Final verdict: [[B]]\n")
    assert not verdict_written("Final verdict: [[")
    assert not verdict_written("Answer [[A]] is better")  # no verdict line yet: may go on
    assert not verdict_written("> Final verdict: [[A]]")  # quoted material is not a decision
    assert not verdict_written("```\nFinal verdict: [[A]]")  # inside an open code block
    assert not verdict_written("Final verdict: [[A]] or [[B]]")  # ambiguous: keep generating


def test_only_prompts_whose_template_asks_for_a_verdict_may_stop_early():
    pair = Pair(id="1", conversation=[Message("user", "Say [[A]]")], response_a="[[A]]", response_b="b")
    assert asks_for_verdict(build_prompt(pair))
    assert not asks_for_verdict([{"role": "user", "content": "Write a poem"}])


def _naive(engine, prompt, max_new_tokens):
    """The baseline: one prompt at a time through plain ``generate``."""
    import torch

    tokenizer = engine.tokenizer
    encoded = tokenizer(engine.render(prompt), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = engine._model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, encoded.input_ids.shape[1] :], skip_special_tokens=True)


PROMPTS = [
    [{"role": "user", "content": "Name three colours."}],
    [{"role": "user", "content": "Reply with exactly this line and nothing else:\nFinal verdict: [[A]]"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France? Explain in detail why it became the capital, with history."}],
]


@pytest.mark.slow
def test_greedy_outputs_equal_the_naive_loop(embedded_model):
    from st_eval.engines.hf import HFEngine

    engine = HFEngine(embedded_model, batch_size=2, stop_at_verdict=False, dtype="float32")  # float32: greedy ties break alike
    greedy = SamplingConfig(max_new_tokens=12)
    fast = engine.generate(PROMPTS, n=2, sampling=greedy)
    for prompt, samples in zip(PROMPTS, fast):
        assert samples[0] == samples[1] == _naive(engine, prompt, 12)


@pytest.mark.slow
def test_verdict_stop_cuts_after_the_verdict_and_parses_the_same(embedded_model):
    from st_eval.engines.hf import HFEngine

    engine = HFEngine(embedded_model, batch_size=3, stop_at_verdict=True, dtype="float32")
    assert engine.identity.endswith(":verdict-stop")
    (out,) = engine.generate([PROMPTS[1]], sampling=SamplingConfig(max_new_tokens=24))[0:1]
    full = _naive(engine, PROMPTS[1], 24)
    assert full.startswith(out[0])
    assert parse_verdict(out[0]) == parse_verdict(full)
    if parse_verdict(full).valid:  # the model obeyed: the stop must have fired at the verdict
        assert out[0].rstrip().endswith("]]")


@pytest.mark.slow
def test_samples_share_one_prefill_and_are_reproducible(embedded_model):
    from st_eval.engines.hf import HFEngine

    engine = HFEngine(embedded_model, batch_size=2, dtype="float32")
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=8, seed=5)
    first = engine.generate(PROMPTS[:2], n=3, sampling=sampling)
    assert [len(s) for s in first] == [3, 3]
    assert engine.generate(PROMPTS[:2], n=3, sampling=sampling) == first
    assert len(set(first[0])) > 1, "three samples at temperature 1 should not all be equal"

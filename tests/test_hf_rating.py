"""The hf engine's packed rating path (st_eval.engines.hf_rating): prompts laid out with each
shared start computed once give each prompt the next-token logits it gets alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from st_eval.engines.hf_batching import use_cpu_attention  # noqa: E402
from st_eval.engines.hf_rating import pack_prefix_tree, packed_last_logits  # noqa: E402
from tiny_models import tiny_llama  # noqa: E402


def test_each_prompt_is_written_from_where_it_leaves_the_one_before_it_and_rows_keep_the_budget():
    prompts = [[5, 6, 7, 8, 1], [9, 9], [5, 6, 7, 2], [9, 9, 3, 4], [5, 6, 30], [5, 6, 7, 2], [5, 6, 7, 8, 3]]
    rows = pack_prefix_tree(prompts, budget=10)
    # sorted: [5,6,7,2] [5,6,7,2] [5,6,7,8,1] [5,6,7,8,3] [5,6,30] | [9,9] [9,9,3,4]
    assert [row.prompts for row in rows] == [[2, 5, 0, 6, 4], [1, 3]]
    first = rows[0]
    assert first.tokens == [5, 6, 7, 2, 2, 8, 1, 3, 30]
    assert first.positions == [0, 1, 2, 3, 3, 3, 4, 4, 2]
    assert first.segments == [
        (0, 4, []),  # the first prompt alone
        (4, 1, [(0, 3)]),  # its copy: only its last token is its own
        (5, 2, [(0, 3)]),  # [8, 1] after [5, 6, 7]
        (7, 1, [(0, 3), (5, 6)]),  # [3] after [5, 6, 7] and the 8 of the prompt before
        (8, 1, [(0, 2)]),  # [30] after [5, 6]
    ]
    assert [first.tokens[e] for e in first.ends] == [2, 2, 1, 3, 30]
    second = rows[1]  # a new row shares nothing with the last: [9, 9] written again
    assert second.tokens == [9, 9, 3, 4] and second.segments == [(0, 2, []), (2, 2, [(0, 2)])]
    assert second.positions == [0, 1, 2, 3] and second.ends == [1, 3]
    assert all(len(row.tokens) <= 10 for row in rows)


#: float32 drift allowed between the packed and the one-prompt logits, relative to their norm:
#: the same terms added in another order on any x86-64 kernel (AVX2, AVX-512) stay near 1e-6,
#: while a prompt attending to another's tokens moves its logits by more than 1e-2 (checked below)
NORM_RELATIVE = 1e-4


def _drift(actual, expected) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


def _prompts() -> list[list[int]]:
    """Three "pairs" (an instruction, two answers of different lengths) after a shared system
    part, one prompt sharing only the system part, a copy, and a chain whose contexts span
    several pieces of the row."""
    generator = torch.Generator().manual_seed(1)
    system = torch.randint(3, 97, (10,), generator=generator).tolist()
    prompts = []
    for _ in range(3):
        instruction = system + torch.randint(3, 97, (int(torch.randint(1, 9, (1,), generator=generator)),), generator=generator).tolist()
        prompts += [instruction + torch.randint(3, 97, (n,), generator=generator).tolist() for n in (3, 11)]
    prompts.append(system + [7])
    prompts.append(list(prompts[0]))
    prompts += [prompts[0] + [11, 12], prompts[0] + [11, 13]]
    return prompts


def _packed(model, prompts: list[list[int]], budget: int) -> dict[int, torch.Tensor]:
    """Each prompt's last-token logits from :func:`packed_last_logits`, by prompt number."""
    got: dict[int, torch.Tensor] = {}

    def keep(logits, row):
        for position, index in enumerate(row.prompts):
            got[index] = logits[position]

    with torch.inference_mode():
        packed_last_logits(model, prompts, budget, keep)
    return got


@pytest.mark.parametrize("budget", [12, 4096])
def test_packed_logits_equal_each_prompt_alone(budget):
    model = tiny_llama(seed=5)
    use_cpu_attention(model)
    prompts = _prompts()
    got = _packed(model, prompts, budget)
    with torch.inference_mode():
        for index, ids in enumerate(prompts):
            alone = model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert _drift(got[index], alone) <= NORM_RELATIVE, index


def test_a_bfloat16_judge_reads_float32_logits_from_its_own_head():
    """A bfloat16 model's logits are bfloat16 numbers (coarse enough to decide close ratings);
    through the packed path they are its head's product in float32: not bfloat16 numbers, and
    equal to the bfloat16 model's own logits up to that rounding."""
    model = tiny_llama(seed=5)
    with torch.no_grad():  # logits of a trained judge's size (tens), where bfloat16 steps by 1/8
        model.lm_head.weight.mul_(60)
    model = model.to(torch.bfloat16)
    use_cpu_attention(model)
    prompts = _prompts()
    got = _packed(model, prompts, 4096)
    with torch.inference_mode():
        for index, ids in enumerate(prompts):
            own = model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert own.dtype == torch.bfloat16 and got[index].dtype == torch.float32
            assert _drift(got[index], own.float()) <= 2e-2, index  # bfloat16's rounding of the body and of the logits
            rounded = got[index].to(torch.bfloat16).float()
            assert (got[index] != rounded).float().mean() > 0.5, index  # float32 numbers, not bfloat16 ones


def test_a_head_that_caps_its_logits_runs_as_the_model_has_it():
    from st_eval.engines.hf_rating import float32_head

    model = tiny_llama()
    assert float32_head(model) is not None
    model.config.final_logit_softcapping = 30.0
    assert float32_head(model) is None


def test_a_row_read_without_its_segments_would_mix_prompts():
    """The check above can fail: the same packed row under plain causal attention lets a prompt
    attend to the tokens of the prompts before it."""
    from st_eval.engines.hf_rating import pack_prefix_tree

    model = tiny_llama(seed=5)
    use_cpu_attention(model)
    prompts = _prompts()
    (row,) = pack_prefix_tree(prompts, 4096)
    last = row.prompts[-1]
    with torch.inference_mode():
        mixed = model(input_ids=torch.tensor([row.tokens]), position_ids=torch.tensor([row.positions])).logits[0, row.ends[-1]]
        alone = model(input_ids=torch.tensor([prompts[last]])).logits[0, -1]
    assert _drift(mixed, alone) > 1e-2


@pytest.mark.parametrize(("given", "expected"), [(None, 2048), (300, 300)])
def test_the_engine_packs_rows_of_the_cpu_budget_unless_told(given, expected, embedded_model, monkeypatch):
    """Rows of 2,048 tokens on CPU (measured faster than 8,192: docs/scale.md); the option wins."""
    from st_eval.engines import hf_rating, make_engine

    budgets = []
    monkeypatch.setattr(hf_rating, "packed_last_logits", lambda model, ids, budget, on_row: budgets.append(budget))
    engine = make_engine("hf", embedded_model, dtype="float32", token_budget=given)
    engine.next_token_logprobs([[{"role": "user", "content": "Is 2 + 2 = 4?"}]])
    assert budgets == [expected]

"""The loop's generation engines on GPUs: prompts per call apart from engine options, one engine
held at a time, the hf engine loading onto the GPU with a device map and capping its static
cache's rows; and resuming a run whose stored recipe predates newer fields."""

from __future__ import annotations

import json

import pytest

from st_eval.errors import InputError
from st_eval.training.config import recipe_from_dict


def test_prompts_per_call_is_not_a_vllm_option():
    base = {"name": "r", "synthesis": {"heldout": 1}}
    assert recipe_from_dict({**base, "engine": "vllm", "engine_options": {"data_parallel_size": 8}}).prompts_per_call == 1024
    assert recipe_from_dict({**base, "engine": "vllm", "chunk_size": 4096}).prompts_per_call == 4096
    assert recipe_from_dict({**base, "engine": "hf", "engine_options": {"batch_size": 32}}).prompts_per_call == 32  # CPU recipes: unchanged
    assert recipe_from_dict({**base, "engine": "hf"}).prompts_per_call == 16
    with pytest.raises(InputError, match=r"field 'chunk_size' must be >= 0"):
        recipe_from_dict({**base, "chunk_size": -1})


def test_the_loop_holds_one_engine_at_a_time(monkeypatch):
    """A generator's engine is released before the judge's starts: two vLLMs would not fit."""
    from st_eval.training import loop

    closed: list[str] = []

    class Engine:
        def __init__(self, name, model, **options):
            self.model, self.options = model, options

        def close(self):
            closed.append(self.model)

    monkeypatch.setattr(loop, "make_engine", Engine)
    recipe = recipe_from_dict({"name": "r", "engine": "vllm", "cache": False, "engine_options": {"tensor_parallel_size": 8}, "synthesis": {"heldout": 1}})
    engines = loop.EngineCache(recipe)
    generator = engines.get("generator")
    assert engines.get("generator") is generator and closed == []
    judge = engines.get("judge")
    assert closed == ["generator"] and judge.options == {"tensor_parallel_size": 8}
    engines.release()
    assert closed == ["generator", "judge"]


@pytest.mark.parametrize(("device", "placement"), [("cuda", {"device_map": "auto"}), ("cuda:1", {"device_map": {"": "cuda:1"}})])
def test_the_hf_engine_loads_straight_onto_the_gpus(device, placement, monkeypatch, embedded_model):
    """No full copy in CPU memory first (a 70B judge would not fit), spread over the GPUs."""
    import transformers

    from st_eval.engines import hf

    calls = []

    class Weights:
        def to(self, where):
            raise AssertionError(f"moved after loading: {where}")

        def eval(self):
            return self

    def from_pretrained(path, **kwargs):
        calls.append(kwargs)
        return Weights()

    monkeypatch.setattr(hf, "_LOADED", {})
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    hf.load_model_and_tokenizer(embedded_model, device=device)
    assert calls == [{"dtype": __import__("torch").bfloat16, **placement}]


def test_the_static_cache_holds_at_most_max_rows_rows():
    """8 prompts x 15 samples x 4k tokens would reserve ~60 GiB of keys and values for an 8B
    judge; the batch shrinks to whole prompts within ``max_rows`` (at least one prompt)."""
    from st_eval.engines.hf import static_batch_prompts

    assert static_batch_prompts(8, 8, 15) == 1
    assert static_batch_prompts(8, 16, 4) == 4
    assert static_batch_prompts(8, 64, 1) == 8


def test_a_run_stored_before_newer_recipe_fields_resumes(tmp_path):
    from st_eval.training.loop import prepare_run_dir

    recipe = recipe_from_dict({"name": "r", "synthesis": {"heldout": 1}})
    stored = recipe.to_dict()
    del stored["chunk_size"], stored["grpo"]["vllm_sleep"], stored["grpo"]["vllm_gpu_memory_utilization"]
    (tmp_path / "recipe.json").write_text(json.dumps(stored))
    prepare_run_dir(recipe, tmp_path, resume=True)  # the missing fields compare at their defaults
    changed = recipe_from_dict({"name": "r", "synthesis": {"heldout": 1}, "chunk_size": 8})
    with pytest.raises(InputError, match="recipe field 'chunk_size' differs"):
        prepare_run_dir(changed, tmp_path, resume=True)


@pytest.mark.parametrize(
    ("method", "flags", "options", "expected"),
    [
        ("lora", {"avx512_bf16"}, {}, "float32"),  # the merged judge stays float32: so is the seed
        ("lora", {"avx2"}, {}, "float32"),
        ("full", {"avx512_bf16"}, {}, "bfloat16"),
        ("full", {"avx2"}, {}, "float32"),
        ("lora", {"amx_bf16"}, {"dtype": "bfloat16"}, "bfloat16"),  # an explicit dtype wins
        ("lora", {"avx2"}, {"device": "cuda"}, "bfloat16"),
    ],
)
def test_every_engine_of_a_run_computes_in_the_trained_judges_dtype(method, flags, options, expected):
    """The seed and the trained judges are measured in one dtype, so a gain is not partly a
    dtype change (on a bfloat16 CPU a merged LoRA judge computes in float32)."""
    from st_eval.training.loop import run_dtype

    recipe = recipe_from_dict({"name": "r", "synthesis": {"heldout": 1}, "train": {"method": method}})
    assert run_dtype(recipe, options, flags) == expected


def test_the_loops_hf_engines_get_the_run_dtype(monkeypatch):
    from st_eval.training import loop

    made = []
    monkeypatch.setattr(loop, "make_engine", lambda name, model, **options: made.append(options) or type("E", (), {"close": lambda self: None})())
    monkeypatch.setattr(loop, "run_dtype", lambda recipe, options: "float32")
    recipe = recipe_from_dict({"name": "r", "engine": "hf", "cache": False, "synthesis": {"heldout": 1}})
    loop.EngineCache(recipe).get("seed")
    assert made == [{"progress": False, "dtype": "float32"}]

"""The GRPO stage: rows in both orders, adjacent; rewards through the core parser; the
consistency reward pairs both orders of a pair; one real GRPO step on the embedded judge."""

from __future__ import annotations

import json

import pytest

from st_eval.errors import InputError
from st_eval.records import Message, Pair
from st_eval.training.config import GRPOSettings, TrainConfig, recipe_from_dict
from st_eval.training.grpo import grpo_rows, reward_functions, train_grpo

PAIRS = [Pair(str(i), [Message("user", f"Name prime number {i}.")], "7", "8", label="A") for i in range(3)]


def as_completion(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_rows_hold_both_orders_of_each_pair_adjacent_with_the_shown_winner():
    rows = grpo_rows([*PAIRS[:2], Pair("x", [Message("user", "q")], "a", "b")], "pairwise-short-v1")  # unlabelled: left out
    assert [(r["pair_id"], r["order"], r["label"]) for r in rows] == [("0", "given", "A"), ("0", "swapped", "B"), ("1", "given", "A"), ("1", "swapped", "B")]
    assert "<answer_a>\n7\n</answer_a>" in rows[0]["prompt"][-1]["content"] and "<answer_a>\n8\n</answer_a>" in rows[1]["prompt"][-1]["content"]


def test_correct_and_format_rewards_read_verdicts_with_the_core_parser():
    rewards = reward_functions("pairwise-short-v1")
    texts = ["Good.\nFinal verdict: [[A]]", "Final verdict: [[B]]", "no verdict", "[[A]] or [[B]]?"]
    completions = [as_completion(t) for t in texts]
    assert rewards["correct"](completions, label=["A", "A", "A", "A"]) == [1.0, 0.0, 0.0, 0.0]
    assert rewards["format"](completions) == [1.0, 1.0, 0.0, 0.0]  # the ambiguous line is no verdict
    first_listed = reward_functions("rewardbench-pair-v2")  # another template, another declared rule
    assert first_listed["correct"]([as_completion("[[A]] or [[B]]?")], label=["A"]) == [1.0]


def test_consistency_pairs_the_same_index_in_the_other_order_and_refuses_a_split_batch():
    consistent = reward_functions("pairwise-short-v1")["consistent"]
    # pair 0: 2 judgments per order; index 0 right in both orders, index 1 wrong when swapped
    completions = [as_completion(f"Final verdict: [[{v}]]") for v in ("A", "A", "B", "A")]
    batch = {"label": ["A", "A", "B", "B"], "pair_id": ["0", "0", "0", "0"], "order": ["given", "given", "swapped", "swapped"]}
    assert consistent(completions, **batch) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(RuntimeError, match="pair '0': its swapped order is not in this generation batch"):
        consistent(completions[:2], label=["A", "A"], pair_id=["0", "0"], order=["given", "given"])


def test_recipe_fields_are_checked():
    base = {"name": "g", "synthesis": {"heldout": 1}}
    recipe = recipe_from_dict({**base, "grpo": {"enabled": True, "num_generations": 5, "reward_weights": {"correct": 1, "consistent": 1}}})
    assert recipe.grpo.num_generations == 5 and recipe.grpo.after_sft
    with pytest.raises(InputError, match=r"field 'grpo.reward_weights' unknown reward\(s\) length"):
        recipe_from_dict({**base, "grpo": {"enabled": True, "reward_weights": {"length": 1}}})
    with pytest.raises(InputError, match=r"field 'grpo.num_generations' must be >= 2"):
        recipe_from_dict({**base, "grpo": {"enabled": True, "num_generations": 1}})
    with pytest.raises(InputError, match=r"field 'grpo.enabled' needs a template whose judge writes its verdict"):
        recipe_from_dict({**base, "template": "rating-yesno-v1", "grpo": {"enabled": True}})


@pytest.mark.slow
def test_one_real_grpo_step_on_the_embedded_judge(tmp_path, embedded_model):
    settings = GRPOSettings(enabled=True, num_generations=2, steps=1, max_completion_length=12, learning_rate=1e-5, temperature=1.0)
    train = TrainConfig(method="lora")
    metrics = train_grpo(embedded_model, PAIRS[:1], "pairwise-short-v1", tmp_path / "judge", settings, train)
    assert metrics["steps"] == 1 and metrics["rows"] == 2
    # every reward ran on the step's batch; the consistency reward would have raised on a split pair
    assert len(metrics["reward_correct"]) == len(metrics["reward_consistent"]) == 1
    assert 0.0 <= metrics["reward"][0] <= 2.0
    saved = json.loads((tmp_path / "judge" / "training.json").read_text())
    assert saved["kind"] == "grpo" and (tmp_path / "judge" / "config.json").exists()
    from st_eval.engines import make_engine

    engine = make_engine("hf", str(tmp_path / "judge"))
    assert engine.generate([[{"role": "user", "content": "Say hi."}]], n=1)[0][0] is not None  # the judge folder loads and runs


def test_the_run_report_shows_grpo_per_step_in_its_table_and_plot(tmp_path):
    from st_eval.training.report import write_report

    evals = {"synthetic": {"order_averaged": 0.6, "accuracy": 0.5, "consistency": 0.4, "invalid_rate": 0.1}}
    grpo = {"reward": [0.5, 1.25], "reward_correct": [0.5, 0.75], "reward_consistent": [0.0, 0.5], "invalid_rate": [0.25, 0.0]}
    summary = {
        "recipe": "x", "seed_model": "m", "template": "t", "select_on": "synthetic", "benchmarks": [],
        "stages": {"pool": {"kept": 10}}, "timings": {"pool": 1.0}, "best": {"iteration": 1, "path": "/j"},
        "iterations": [
            {"iteration": 0, "eval": evals, "judge": None, "trained": None},
            {"iteration": 1, "eval": evals, "judge": "/j", "trained": True, "annotation": {"pairs": 4, "examples": 2}, "training": {"grpo": grpo}},
        ],
    }
    paths = write_report(tmp_path, summary)
    text = paths["md"].read_text()
    assert "## GRPO per step" in text and "| 1 | 2 | 1.250 | 0.750 | 0.500 | 0.000 |" in text
    assert paths["grpo_png"].stat().st_size > 1000


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_each_process_scores_whole_pairs_and_trains_one_group_at_a_time(processes, tmp_path):
    """The generation batch, as trl's sampler and accelerate's per-process split cut it, gives each
    process whole pairs (both orders, every judgment), which the consistency reward needs; the
    trainer then steps through it in micro-batches of one prompt's group."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler
    from trl.trainer.utils import RepeatSampler

    from st_eval.training.grpo import grpo_arguments

    settings = GRPOSettings(enabled=True, num_generations=3, pairs_per_step=4)
    pairs = [Pair(str(i), [Message("user", f"Name prime number {i}.")], "7", "8", label="A") for i in range(8)]
    rows = grpo_rows(pairs, "pairwise-short-v1")
    args = grpo_arguments(settings, TrainConfig(), tmp_path, 0, processes=processes, longest_prompt=100, context_window=None)
    micro, steps = args["per_device_train_batch_size"], args["steps_per_generation"]
    assert micro == settings.num_generations and args["gradient_accumulation_steps"] == steps == 8 // processes
    generation_batch = micro * processes * steps  # trl's GRPOConfig: per-device batch x processes x steps per generation
    assert generation_batch == 2 * settings.pairs_per_step * settings.num_generations
    sampler = RepeatSampler(rows, mini_repeat_count=3, batch_size=generation_batch // 3, repeat_count=steps, shuffle=args["shuffle_dataset"])
    consistent = reward_functions("pairwise-short-v1")["consistent"]
    seen = set()
    for index in range(processes):
        shard = BatchSamplerShard(BatchSampler(sampler, micro * steps, drop_last=False), num_processes=processes, process_index=index)
        local = [rows[i] for i in next(iter(shard))]  # this process's generation batch, scored before it is split
        assert len(local) == micro * steps
        batch = {key: [r[key] for r in local] for key in ("label", "pair_id", "order")}
        right = [as_completion(f"Final verdict: [[{label}]]") for label in batch["label"]]
        assert consistent(right, **batch) == [1.0] * len(local)  # raises if a pair's other order were elsewhere
        seen.update(batch["pair_id"])
    assert len(seen) == settings.pairs_per_step  # one optimizer step covers every pair of the step, once


def test_pairs_per_step_must_split_evenly_over_the_processes(tmp_path):
    from st_eval.training.grpo import grpo_arguments

    with pytest.raises(InputError, match=r"field 'grpo.pairs_per_step' \(3\) must be a multiple of the training processes \(2\)"):
        grpo_arguments(GRPOSettings(enabled=True, pairs_per_step=3), TrainConfig(), tmp_path, 0, processes=2, longest_prompt=10, context_window=None)


def test_trl_accepts_the_arguments_and_makes_one_generation_batch_per_step(tmp_path):
    from trl import GRPOConfig

    from st_eval.training.grpo import grpo_arguments

    settings = GRPOSettings(enabled=True, num_generations=4, pairs_per_step=2)
    config = GRPOConfig(**grpo_arguments(settings, TrainConfig(), tmp_path, 0, processes=1, longest_prompt=10, context_window=None))
    assert (config.generation_batch_size, config.per_device_train_batch_size, config.gradient_accumulation_steps) == (16, 4, 4)

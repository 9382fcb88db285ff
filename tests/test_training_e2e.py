"""End to end on the embedded judge: the whole loop for one iteration with a tiny budget.

Real generation (tagging, synthesis, annotation, evaluation), real trl training steps, and the
trained folder judged through the real CLI. Kept small for a 2-core CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from st_eval.judge import build_prompt
from st_eval.records import Message, Pair

pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny",
    "seed_model": "smollm2-135m",
    "engine": "hf",
    "engine_options": {"batch_size": 8},
    "template": "pairwise-short-v1",
    "verdict_step": True,
    "iterations": 1,
    "pool": {"sources": ["builtin"], "limit": 6},
    "selection": {"keep_untagged": True, "max_new_tokens": 8},
    "synthesis": {"max_new_tokens": 64, "instruction_max_new_tokens": 32, "heldout": 1, "truncated": "trim",
                  "answer_system": "Answer briefly, in one or two sentences."},
    "annotation": {"samples": 2, "max_new_tokens": 32, "balance": False},
    "train": {"method": "lora", "epochs": 1, "batch_size": 2, "max_length": 768, "learning_rate": 1e-3},
    "evaluation": {"max_new_tokens": 24, "benchmarks": [{"name": "llmbar", "path": "llmbar/natural.json", "limit": 2}]},
}


def _cli(*args: str, env_data: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "ST_EVAL_SHARED_DATA": str(env_data)}
    return subprocess.run([sys.executable, "-m", "st_eval.cli", *args], capture_output=True, text=True, env=env, timeout=600)


def _train(tmp_path: Path, recipe_fields: dict, shared_data: Path) -> tuple[Path, Path, str]:
    """Run ``st-eval train`` on a recipe written from ``recipe_fields``; its recipe file, run dir
    and what it wrote on the terminal's error stream (where progress goes)."""
    recipe = tmp_path / f"{recipe_fields['name']}.yaml"
    recipe.write_text(yaml.safe_dump(recipe_fields))
    run_dir = tmp_path / "run"
    done = _cli("train", "--recipe", str(recipe), "--run-dir", str(run_dir), env_data=shared_data)
    assert done.returncode == 0, done.stderr[-3000:]
    return recipe, run_dir, done.stderr


def test_train_command_runs_one_iteration_and_resumes(tmp_path, shared_data, embedded_model):
    recipe, run_dir, terminal = _train(tmp_path, TINY, shared_data)
    # One line per stage on the terminal; the libraries' per-step dicts and bars go to train.log.
    for stage in ("pool", "selection", "synthesis", "evaluation it0", "annotation it1", "training it1"):
        assert f"stage {stage}" in terminal, (stage, terminal[-3000:])
    assert "{'loss'" not in terminal and "Loading weights" not in terminal
    log = (run_dir / "train.log").read_text()
    assert "training (sft) step 1: " in log and '"loss"' in log
    for name in ("pool.jsonl", "selection.json", "synthesis.json", "iter-00/eval.json", "iter-01/annotation.json", "report.md", "report.png", "best.json"):
        assert (run_dir / name).exists(), name
    synthesis = json.loads((run_dir / "synthesis.json").read_text())
    assert synthesis["instructions"] == 6
    assert synthesis["pairs"] + sum(v for k, v in synthesis.items() if k.startswith("dropped_")) == 6
    annotation = json.loads((run_dir / "iter-01" / "annotation.json").read_text())
    assert annotation["samples"] == annotation["pairs"] * 2 * 2
    report = json.loads((run_dir / "report.json").read_text())
    assert [it["iteration"] for it in report["iterations"]] == [0, 1]
    assert set(report["iterations"][0]["eval"]) == {"synthetic", "llmbar"}
    # The seed judge rarely concludes by itself; the verdict step finished its samples, so
    # rejection sampling kept judgments and a judge was trained on them.
    assert annotation["forced_samples"] > 0 and annotation["valid_samples"] == annotation["samples"]
    assert annotation["examples"] >= 1
    judge = run_dir / "iter-01" / "judge"
    assert json.loads((judge / "training.json").read_text())["steps"] >= 1
    card = json.loads((judge / "card.json").read_text())
    assert card["template"] == "pairwise-short-v1" and "llmbar" in card["evaluation"]
    assert card["decoding"]["verdict_step"] is True and "--verdict-step" in card["usage"]
    seed_eval = report["iterations"][0]["eval"]["llmbar"]
    assert seed_eval["forced_rate"] > 0 and "llmbar forced" in report["table"][0]
    # A second run without --resume refuses; with --resume it redoes nothing and reports the same.
    again = _cli("train", "--recipe", str(recipe), "--run-dir", str(run_dir), env_data=shared_data)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _cli("train", "--recipe", str(recipe), "--run-dir", str(run_dir), "--resume", env_data=shared_data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stage synthesis: " in resumed.stderr and "(done earlier, reused)" in resumed.stderr
    assert json.loads((run_dir / "report.json").read_text())["iterations"] == report["iterations"]
    # Stopped after SFT but before the training stage ended (e.g. during GRPO): the finished SFT
    # judge is kept, not trained again.
    trained_at = (judge / "training.json").stat().st_mtime_ns
    (run_dir / "iter-01" / "train.json").unlink()
    resumed = _cli("train", "--recipe", str(recipe), "--run-dir", str(run_dir), "--resume", env_data=shared_data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (judge / "training.json").stat().st_mtime_ns == trained_at
    assert json.loads((run_dir / "iter-01" / "train.json").read_text())["sft"]["steps"] >= 1


def test_sft_trains_a_loadable_judge_folder(tmp_path, embedded_model, shared_data):
    """A real trl SFT step (LoRA, loss on the judgment only), merged, then used by st-eval judge."""
    from st_eval.training.config import TrainConfig
    from st_eval.training.jobs import TrainJob
    from st_eval.training.sft import run_job

    pair = Pair("1", [Message("user", "What is 2 + 2?")], "4", "5", label="A")
    rows = [
        {"prompt": build_prompt(pair, order, "pairwise-short-v1"),
         "completion": [{"role": "assistant", "content": f"The correct sum is 4.\nFinal verdict: [[{letter}]]"}]}
        for order, letter in (("given", "A"), ("swapped", "B"))
    ]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judge"
    config = TrainConfig(epochs=1, batch_size=2, max_length=768, learning_rate=1e-3)
    metrics = run_job(TrainJob("sft", embedded_model, str(data), str(out), config))
    assert metrics["steps"] == 1 and metrics["examples"] == 2
    assert metrics["padding_free"] is True and metrics["examples_per_second"] > 0  # CPU: one row, no padding
    assert (out / "config.json").exists() and (out / "training.json").exists()
    judged = _cli(
        "judge", "--model", str(out), "--template", "pairwise-short-v1", "--max-new-tokens", "8",
        "-i", "What is 2 + 2?", "-a", "4", "-b", "5", env_data=shared_data,
    )
    assert judged.returncode == 0, judged.stderr[-2000:]
    assert "verdict:" in judged.stdout


def test_dpo_trains_from_correct_versus_wrong_judgments(tmp_path, embedded_model):
    """A real trl DPO step on (kept judgment, wrong judgment) rows built from annotation examples."""
    from st_eval.training.annotation import Example
    from st_eval.training.config import recipe_from_dict
    from st_eval.training.dpo import train_dpo

    pair = Pair("1", [Message("user", "What is 2 + 2?")], "4", "5", label="A")
    examples = [
        Example("1", order, build_prompt(pair, order, "pairwise-short-v1"), f"Final verdict: [[{good}]]", good, f"Final verdict: [[{bad}]]")
        for order, good, bad in (("given", "A", "B"), ("swapped", "B", "A"))
    ]
    recipe = recipe_from_dict({
        "name": "t", "template": "pairwise-short-v1", "dpo": {"enabled": True, "epochs": 1},
        "train": {"batch_size": 2, "max_length": 768},
    })
    metrics = train_dpo(recipe, embedded_model, examples, tmp_path)
    assert metrics is not None and metrics["kind"] == "dpo" and metrics["steps"] == 1
    assert (tmp_path / "judge-dpo" / "config.json").exists()
    assert train_dpo(recipe, embedded_model, [Example("1", "given", [], "x", "A", None)], tmp_path / "none") is None


RATING = {
    "name": "tiny-rating",
    "template": "rating-yesno-v1",
    "iterations": 1,
    "pool": {"sources": [{"kind": "self_instruct", "path": "self_instruct/seed_tasks.jsonl"}], "limit": 14},
    "selection": {"enabled": False},
    "synthesis": {"method": "retrieval_neighbour", "neighbours": 1, "heldout": 4},
    "annotation": {"hard_negatives": 2},
    "train": {"method": "lora", "init": "seed", "epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    "evaluation": {"benchmarks": [{"name": "llmbar", "path": "llmbar", "limit": 2, "required": False}]},
}


@pytest.mark.extended  # ~5 minutes on 2 cores: CI runs it (scripts/test.sh --extended), the default run does not
def test_rating_recipe_trains_two_iterations_with_judge_chosen_hard_negatives(tmp_path, shared_data, embedded_model):
    """One iteration, then the finished run resumed for a second that continues the first adapter
    (``train.init`` changed on resume: recorded, and each iteration's card keeps its own recipe)."""
    recipe, run_dir, _ = _train(tmp_path, RATING, shared_data)
    recipe.write_text(yaml.safe_dump({**RATING, "train": {**RATING["train"], "init": "previous"}}))
    resumed = _cli("train", "--recipe", str(recipe), "--run-dir", str(run_dir), "--resume", "--iterations", "2", env_data=shared_data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    terminal = resumed.stderr
    assert "recipe changes from iteration 2 on: train.init" in terminal
    assert "stage training it2" in terminal and "{'loss'" not in terminal
    assert json.loads((run_dir / "recipe.changes.json").read_text()) == [{"from_iteration": 2, "changed": {"train.init": ["seed", "previous"]}}]
    assert "from iteration 2 on: `train.init` 'seed' -> 'previous'" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "iter-01" / "judge" / "card.json").read_text())["training"]["init"] == "seed"
    synthesis = json.loads((run_dir / "synthesis.json").read_text())
    assert synthesis["given_answers"] == 14 and synthesis["generated_answers"] == 0  # Self-Instruct answers: no generation
    assert synthesis["heldout"] == 4 and synthesis["train"] == 10 * 2  # 2 candidates per training request
    first = json.loads((run_dir / "iter-01" / "annotation.json").read_text())
    second = json.loads((run_dir / "iter-02" / "annotation.json").read_text())
    assert first["chooser"] == "every source's pairs (neighbour: the 1 nearest)" and first["pairs"] == 10
    assert second["chooser"].endswith("iter-01/judge") and second["candidates"] == 20 and second["pairs"] == 10
    trained = json.loads((run_dir / "iter-02" / "judge" / "training.json").read_text())
    assert trained["kind"] == "reward" and trained["continued_adapter"].endswith("iter-01/judge/adapter")
    report = json.loads((run_dir / "report.json").read_text())
    gains = report["gains_over_seed"]["2"]
    assert {"synthetic", "llmbar", "llmbar/llmbar-natural"} <= set(gains)
    assert gains["llmbar"]["accuracy"]["n"] == 10 and "gain_ci" in gains["llmbar"]["order_averaged"]
    card = json.loads((run_dir / "iter-02" / "judge" / "card.json").read_text())
    assert card["gains_over_seed"] == gains and card["human_labels"].startswith("none") and card["training"]["init"] == "previous"
    assert card["evaluation"]["llmbar"]["consistency"] == 1.0  # a rating judge cannot flip with the order
    # the trained folder judges with its card's template when none is named
    judged = _cli("judge", "--model", str(run_dir / "iter-02" / "judge"), "-i", "What is 2 + 2?", "-a", "4", "-b", "Blue.", env_data=shared_data)
    assert judged.returncode == 0, judged.stderr[-2000:]
    assert "rating of A" in judged.stdout

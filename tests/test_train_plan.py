"""``st-eval train --plan`` and the checks before a run: the committed plans of the GPU recipes
are what the code computes today (config files of the real models' shapes, no weights), and
every combination known to fail on GPUs is refused in one line naming the recipe field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from st_eval.errors import InputError
from st_eval.training.config import load_recipe
from st_eval.training.plan import LIBRARIES_HEADING, Cluster, make_plan, parse_size

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "recipes"
CONFIGS = ROOT / "tests" / "data" / "model-configs"
GPU_RECIPES = {
    "llama-3.1-8b-gpu": ("llama-3.1-8b-instruct.json", 1, None),
    "llama-3.1-8b-grpo": ("llama-3.1-8b-instruct.json", 1, None),
    "llama-3.1-70b-multinode": ("llama-3.1-70b-instruct.json", 2, "/shared/runs/llama-3.1-70b-multinode"),
}
H100 = Cluster(parse_size("80GiB"), 8, 1)


@pytest.mark.parametrize("name", sorted(GPU_RECIPES))
def test_the_committed_plan_is_what_the_recipe_plans_today(name, monkeypatch):
    """docs/plans/<recipe>.md, as `st-eval train --recipe ... --plan` prints it (the libraries
    section, which depends on the machine, left out)."""
    monkeypatch.chdir(ROOT)
    config, nodes, run_dir = GPU_RECIPES[name]
    path = Path("training/recipes") / f"{name}.yaml"
    plan = make_plan(load_recipe(path), path, Cluster(parse_size("80GiB"), 8, nodes), model_config=Path("tests/data/model-configs") / config, run_dir=run_dir)
    committed = (ROOT / "docs" / "plans" / f"{name}.md").read_text()
    assert plan.markdown(libraries=False) == committed.split(LIBRARIES_HEADING)[0].rstrip() + "\n"
    assert not plan.refusals


def test_the_multinode_plan_gives_each_worker_its_command_and_sizes_the_offloaded_optimizer(monkeypatch):
    monkeypatch.chdir(ROOT)
    text = (ROOT / "docs" / "plans" / "llama-3.1-70b-multinode.md").read_text()
    assert "st-eval train-worker --run-dir /shared/runs/llama-3.1-70b-multinode --machine-rank 1" in text
    assert "70.55 B parameters" in text and "CPU memory per node for the offloaded optimizer: 394 GiB" in text
    assert "runs on the main node only" in text  # generation: the second node waits


def _recipe(tmp_path: Path, name: str, changes: dict | None = None, accelerate: dict | None = None):
    """A shipped recipe with some fields changed (``a.b``: value), written beside a copy of its
    accelerate config (with ``accelerate`` changes), and loaded."""
    data = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    if data["train"].get("accelerate_config"):
        config = yaml.safe_load((RECIPES / data["train"]["accelerate_config"]).read_text())
        for key, value in (accelerate or {}).items():
            target = config
            *parents, last = key.split(".")
            for part in parents:
                target = target[part]
            if value is None:
                target.pop(last, None)
            else:
                target[last] = value
        (tmp_path / "accelerate.yaml").write_text(yaml.safe_dump(config))
        data["train"]["accelerate_config"] = "accelerate.yaml"
    for key, value in (changes or {}).items():
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(path), path


REFUSALS = [
    # 1: GRPO's colocated vLLM without room for one sequence of its context
    ("llama-3.1-8b-grpo", {"grpo.vllm_gpu_memory_utilization": 0.2}, None, r"field 'grpo.vllm_gpu_memory_utilization' \(0.2\) leaves the colocated vLLM 0 tokens"),
    # 1: both phases on the GPU at once (no sleep): the trainer's activations beside vLLM's share
    ("llama-3.1-8b-grpo", {"grpo.vllm_sleep": False}, None, r"field 'grpo.vllm_gpu_memory_utilization' \(0.3\) needs ~\d+\.\d GiB per GPU for GRPO"),
    # 2: a generation batch that would split pairs over processes
    ("llama-3.1-8b-grpo", {"grpo.pairs_per_step": 4}, None, r"field 'grpo.pairs_per_step' \(4\) must be a multiple of the training processes \(8\)"),
    # 5: DeepSpeed over machines through pdsh
    ("llama-3.1-70b-multinode", None, {"deepspeed_config.deepspeed_multinode_launcher": None}, r"field 'train.accelerate_config' .*without deepspeed_multinode_launcher: standard"),
    # 8: 70B full fine-tuning with ZeRO-3 and nothing offloaded
    ("llama-3.1-70b-multinode", None, {"deepspeed_config.offload_optimizer_device": "none"}, r"field 'train.accelerate_config' \(accelerate.yaml\) needs ~9\d\.\d GiB per GPU for SFT.*offload the optimizer"),
    # 9: vLLM's batch_size, and one GPU of eight asked for more than the node has
    ("llama-3.1-8b-gpu", {"engine_options.batch_size": 32}, None, r"field 'engine_options.batch_size' is not a vllm.LLM option"),
    ("llama-3.1-8b-gpu", {"engine_options.data_parallel_size": 16}, None, r"field 'engine_options.data_parallel_size' asks for 16 GPUs; generation runs on one node of 8"),
    # 1/9: the model's whole window in a small share of the GPU
    ("llama-3.1-8b-gpu", {"engine_options": {"gpu_memory_utilization": 0.3}}, None, r"field 'engine_options.max_model_len' \(131,072\) is more than the KV cache holds"),
    # server pool: the loop's new judges are not served
    ("llama-3.1-8b-gpu", {"engine": "openai", "engine_options": {}}, None, r"field 'engine' is 'openai': a server serves a fixed model"),
    # 11: judgments cut off their verdicts
    ("llama-3.1-8b-gpu", {"train.max_length": 4096}, None, r"field 'train.max_length' \(4,096\) is under the longest row \(~4,692 tokens"),
    # 12: full fine-tuning on one GPU (float32 weights, gradients and Adam)
    ("llama-3.1-8b-gpu", {"train.method": "full", "train.launcher": "inprocess"}, None, r"field 'train.method' \(full\) needs ~1\d\d\.\d GiB per GPU for SFT"),
]


@pytest.mark.parametrize(("name", "changes", "accelerate", "message"), REFUSALS)
def test_a_combination_known_to_fail_is_refused_naming_its_field(name, changes, accelerate, message, tmp_path):
    recipe, path = _recipe(tmp_path, name, changes, accelerate)
    config, nodes, _ = GPU_RECIPES[name]
    plan = make_plan(recipe, path, Cluster(parse_size("80GiB"), 8, nodes), model_config=CONFIGS / config)
    matching = [line for line in plan.refusals if __import__("re").search(message, line)]
    assert len(matching) == 1, plan.refusals
    assert "\n" not in matching[0]


def test_a_cluster_other_than_the_accelerate_configs_is_refused(tmp_path):
    recipe, path = _recipe(tmp_path, "llama-3.1-70b-multinode")
    plan = make_plan(recipe, path, Cluster(parse_size("80GiB"), 8, 1), model_config=CONFIGS / "llama-3.1-70b-instruct.json")
    assert any("field 'train.accelerate_config' (accelerate.yaml) is for 2 machine(s); the cluster has 1" in line for line in plan.refusals)


def test_the_plan_command_prints_the_plan_and_refuses_with_one_error_line_each(tmp_path):
    from typer.testing import CliRunner

    from st_eval.cli import app

    _, path = _recipe(tmp_path, "llama-3.1-8b-gpu", {"train.max_length": 4096, "engine_options.batch_size": 32})
    result = CliRunner().invoke(app, ["train", "--recipe", str(path), "--plan", "--model-config", str(CONFIGS / "llama-3.1-8b-instruct.json")])
    assert result.exit_code == 2
    assert result.stdout.startswith("# Plan: llama-3.1-8b-gpu") and "### 2. SFT (each iteration)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all(line.startswith(f"error: {path}: field '") for line in errors)
    with pytest.raises(InputError, match="--gpu-memory '80 gigs'"):
        parse_size("80 gigs")


def test_a_run_refuses_before_it_starts(tmp_path, monkeypatch):
    """The recipe checks run before any stage: a run that would stop at its first training stage
    does not spend hours generating first."""
    from st_eval.training import preflight
    from st_eval.training.loop import run

    recipe, _ = _recipe(tmp_path, "llama-3.1-8b-gpu", {"engine": "openai", "engine_options": {}})
    with pytest.raises(InputError, match=r"recipe 'llama-3.1-8b-gpu': field 'engine' is 'openai'"):
        run(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    recipe, _ = _recipe(tmp_path, "llama-3.1-70b-multinode")
    monkeypatch.setattr(preflight, "installed", lambda name: {"vllm": "0.31.0"}.get(name))
    with pytest.raises(InputError, match=r"field 'train.accelerate_config' \(accelerate.yaml\) trains with DeepSpeed, which is not installed: pip install 'st-eval\[deepspeed\]'"):
        run(recipe, tmp_path / "run")


def test_vllm_outside_the_range_trl_drives_is_refused(tmp_path, monkeypatch):
    from st_eval.training import preflight

    recipe, _ = _recipe(tmp_path, "llama-3.1-8b-grpo")
    monkeypatch.setattr(preflight, "installed", lambda name: {"vllm": "0.33.0", "trl": "1.16.0"}.get(name))
    problems = dict(preflight.environment_problems(recipe))
    assert problems["engine"] == "needs vLLM >=0.22,<=0.31.0 (st-eval's vllm engine); vllm 0.33.0 is installed: pip install 'st-eval[vllm]'"
    assert problems["grpo.use_vllm"].startswith("needs vLLM <=0.31.0,>=0.22.0 (trl 1.16.0); vllm 0.33.0 is installed")
    monkeypatch.setattr(preflight, "installed", lambda name: {"vllm": "0.31.0", "trl": "1.16.0"}.get(name))
    assert preflight.environment_problems(recipe) == []


def test_the_shipped_accelerate_configs_launch_per_node_and_offload_the_70b_optimizer():
    from st_eval.training.launch_config import read_launch_config

    deepspeed = read_launch_config(ROOT / "training" / "accelerate" / "deepspeed-zero3-multinode.yaml")
    assert (deepspeed.multinode_launcher, deepspeed.zero_stage, deepspeed.offload_optimizer, deepspeed.machines, deepspeed.processes) == (
        "standard", 3, "cpu", 2, 16,
    )
    ddp = read_launch_config(ROOT / "training" / "accelerate" / "ddp-1node-8gpu.yaml")
    assert (ddp.distributed_type, ddp.processes, ddp.sharded) == ("MULTI_GPU", 8, False)


def test_pyproject_declares_the_versions_the_plan_checks_against():
    from st_eval.training.versions import SUPPORTED

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["vllm"] + project["optional-dependencies"]["deepspeed"] + project["optional-dependencies"]["ray"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].strip()
        declared[name.split("[")[0]] = requirement[len(name):]  # ray[data]: the extra's name is ray
    assert {name: declared[name] for name in SUPPORTED} == SUPPORTED
